"""Bad input never crashes the portal: arbitrary text in forms and query strings gives a page, not a 500."""

from __future__ import annotations

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.conftest import Auth
from tests.web.portal_world import World

TEXT = st.text(max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nickname=TEXT, phone=TEXT, numbers=TEXT, start=TEXT, company=TEXT)
def test_arbitrary_form_and_query_text(
    client: FlaskClient, auth: Auth, world: World, nickname: str, phone: str, numbers: str, start: str, company: str
) -> None:
    auth.login("acmeadmin")
    sid = world.a.subscriber_id
    posts = [
        (f"/s/{sid}/users/new", {"nickname": nickname, "phone": phone}),
        (f"/s/{sid}/groups/new", {"name": nickname, "numbers": numbers, "contacts": [phone]}),
        (f"/ics/{world.a.ic_id}/edit", {"name": nickname, "numbers": numbers, "groups": [company]}),
        (f"/live/{world.a.live_run_id}/dial", {"number": phone}),
        (f"/live/{world.a.live_run_id}/legs/{world.a.live_leg_ids[1]}/mute", {"muted": phone}),
        ("/company/subscribers/new", {"company_id": company, "name": nickname, "mobile": phone, "status": start}),
    ]
    for url, data in posts:
        assert client.post(url, data=data).status_code in (200, 302, 400, 409), url
    for url in ("/company/usage", "/company/usage.csv", "/company/cdrs", "/company/"):
        response = client.get(url, query_string={"start": start, "end": numbers, "company_id": company})
        assert response.status_code == 200, url
