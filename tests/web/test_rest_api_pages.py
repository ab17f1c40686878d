"""REST CDR pages: keyset pagination in (created_at, id) order behind the tenant filter and the time range,
every row once across pages, cursors that are not ours refused, and each page one index range scan (the plan
SQLite chooses for the SQL the view issues, over the indexes the migrations create)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, insert

from bridge.db import make_engine
from bridge.db.models import Cdr
from tests.web.portal_world import World
from tests.web.rest_fixtures import Tokens, bearer, make_tokens

T = dt.datetime(2026, 5, 1, 12, 0, 0)


@pytest.fixture
def tokens(world: World) -> Tokens:
    return make_tokens(world)


@pytest.fixture
def api(app: Flask) -> FlaskClient:
    return app.test_client()


def _seed(world: World) -> None:
    """Rows whose ids are not in time order, several sharing one created_at, in both companies."""
    offsets = [5, 0, 3, 3, 3, 1, 7, 3, 0, 2, 9, 4]  # seconds after T; id order differs from time order
    engine = make_engine(world.url)
    with engine.begin() as connection:
        rows = [
            {"created_at": T + dt.timedelta(seconds=s), "company_id": company, "company_name": "x",
             "subscriber_id": subscriber, "direction": "out", "role": "participant"}
            for s in offsets
            for company, subscriber in ((world.a.company_id, world.a.subscriber_id),
                                        (world.b.company_id, world.b.subscriber_id))
        ]  # fmt: skip
        connection.execute(insert(Cdr), rows)
    engine.dispose()


def _all_pages(api: FlaskClient, secret: str, query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(100):
        response = api.get(f"/api/v1/cdrs?limit=2&{query}{cursor}", headers=bearer(secret))
        assert response.status_code == 200, response.get_data(as_text=True)
        items += response.json["items"]
        if response.json["next_cursor"] is None:
            return items
        cursor = f"&cursor={response.json['next_cursor']}"
    raise AssertionError("pages never ended")


def _key(item: dict[str, Any]) -> tuple[str, int]:
    return item["created_at"], item["id"]


def test_pages_walk_every_cdr_once_in_created_at_then_id_order(
    api: FlaskClient, tokens: Tokens, world: World
) -> None:
    _seed(world)
    everything = _all_pages(api, tokens.operator, "")
    assert [_key(i) for i in everything] == sorted(_key(i) for i in everything)
    assert len({i["id"] for i in everything}) == len(everything) >= 24
    window = "from=2026-05-01T12:00:03Z&to=2026-05-01T12:00:07Z&"
    a = _all_pages(api, tokens.company_a, window)
    expected = [
        i for i in everything
        if i["company_id"] == world.a.company_id and "2026-05-01T12:00:03" <= i["created_at"] < "2026-05-01T12:00:07"
    ]  # fmt: skip
    assert a == expected and len(a) == 6  # 3, 3, 3, 3, 4, 5 seconds: four rows share one time across pages
    assert _all_pages(api, tokens.operator, f"company_id={world.a.company_id}&{window}") == expected
    b = _all_pages(api, tokens.operator, f"subscriber_id={world.b.subscriber_id}&")
    assert b and {i["subscriber_id"] for i in b} == {world.b.subscriber_id}


def test_a_cursor_before_the_from_bound_does_not_reach_earlier_rows(
    api: FlaskClient, tokens: Tokens, world: World
) -> None:
    _seed(world)
    first = api.get("/api/v1/cdrs?limit=1&from=2026-05-01T12:00:00Z", headers=bearer(tokens.operator)).json
    later = "from=2026-05-01T12:00:05Z&to=2026-05-01T12:00:06Z"
    response = api.get(f"/api/v1/cdrs?{later}&cursor={first['next_cursor']}", headers=bearer(tokens.operator))
    assert {i["created_at"] for i in response.json["items"]} == {"2026-05-01T12:00:05"}


@pytest.mark.parametrize(
    "cursor", ["12", "abc", "1-", "-1", "1-2-3", "9" * 19 + "-1", "999999999999999999-1", "1-" + "9" * 13, "١-1"]
)
def test_a_cursor_that_is_not_ours_is_a_400_problem(api: FlaskClient, tokens: Tokens, cursor: str) -> None:
    response = api.get("/api/v1/cdrs", query_string={"cursor": cursor}, headers=bearer(tokens.operator))
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert response.json["field"] == "cursor"


@pytest.fixture
def statements() -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if " FROM cdr " in " ".join(statement.split()) + " ":
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    yield seen
    event.remove(Engine, "before_cursor_execute", capture)


@pytest.mark.parametrize(
    ("who", "query", "index"),
    [
        ("operator", "", "ix_cdr_created_at_id"),
        ("operator", "from=2026-05-01T12:00:01Z&to=2026-05-01T12:00:09Z&", "ix_cdr_created_at_id"),
        ("company_a", "", "ix_cdr_company_created_at_id"),
        ("company_a", "from=2026-05-01T12:00:01Z&to=2026-05-01T12:00:09Z&", "ix_cdr_company_created_at_id"),
        ("subscriber_a", "from=2026-05-01T12:00:01Z&", "ix_cdr_subscriber_created_at_id"),
    ],
)
def test_each_page_is_one_index_range_scan_without_a_sort(
    api: FlaskClient, tokens: Tokens, world: World, statements: list[tuple[str, Any]], who: str, query: str, index: str
) -> None:
    _seed(world)
    secret = getattr(tokens, who)
    first = api.get(f"/api/v1/cdrs?limit=2&{query}", headers=bearer(secret)).json
    api.get(f"/api/v1/cdrs?limit=2&{query}cursor={first['next_cursor']}", headers=bearer(secret))
    assert len(statements) == 2
    with sqlite3.connect(world.url.removeprefix("sqlite:///")) as connection:
        plans = [
            " | ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + statement, parameters))
            for statement, parameters in statements
        ]
    # the first page may walk the index from its start (in order, stopping at the limit); the cursor's page seeks
    assert plans[0].split(" (")[0] in (f"SCAN cdr USING INDEX {index}", f"SEARCH cdr USING INDEX {index}"), plans
    assert plans[1].startswith(f"SEARCH cdr USING INDEX {index} (") and "TEMP B-TREE" not in " ".join(plans), plans
    last = statements[-1][0]
    assert last.count("cdr.created_at >=") == 1  # one lower bound: the later of `from` and the cursor
