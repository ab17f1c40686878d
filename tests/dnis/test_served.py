"""ServedNumbers: the config's and the database's numbers, looked up with or without a leading +."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bridge.config import from_dict
from bridge.db.models import DnisKind, DnisNumber
from bridge.dnis.served import ServedNumbers


def test_config_numbers_with_or_without_plus() -> None:
    config = from_dict({"dnis": {"common": "+15550100", "pool": "+15550101-+15550102"},
                        "room": [{"number": "1001", "name": "r"}]})  # fmt: skip
    served = ServedNumbers.from_config(config)
    assert all(n in served for n in ("+15550100", "15550100", "+15550102", "1001", "+1001"))
    assert not any(n in served for n in ("+15550103", "1002", "", None))
    assert len(served) == 4


def test_load_adds_the_numbers_stored_in_the_database(session: Session) -> None:
    session.add(DnisNumber(number="+15550199", kind=DnisKind.POOL, position=9))
    session.flush()
    served = ServedNumbers.load(from_dict({}), session)
    assert "15550199" in served and "+15550100" not in served
