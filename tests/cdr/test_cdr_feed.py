"""The real-time TCP feed on loopback: live lines, RESUME after a disconnect, no gaps, no duplicates."""

from __future__ import annotations

import asyncio
import threading

import pytest
from cdr_world import Tenant, add_cdr
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.csvformat import HEADER
from bridge.cdr.feed import CdrFeed, parse_resume

TIMEOUT = 10.0


def test_parse_resume() -> None:
    assert parse_resume("RESUME 42\n") == 42
    assert parse_resume("resume 0") == 0
    for bad in ("RESUME", "RESUME -1", "HELLO 3", "RESUME 1 2", ""):
        with pytest.raises(ValueError):
            parse_resume(bad)


class Writer:
    """Writes CDRs from another thread, as the conference service does, and notifies the feed."""

    def __init__(self, factory: sessionmaker[Session], tenant: Tenant, feed: CdrFeed) -> None:
        self.factory, self.tenant, self.feed = factory, tenant, feed
        self.ids: list[int] = []

    def write(self, count: int) -> None:
        for _ in range(count):
            with self.factory() as s:
                cdr_id = add_cdr(s, company_id=self.tenant.company_id).id
                s.commit()
            self.ids.append(cdr_id)
            self.feed.notify(cdr_id)


async def read_ids(reader: asyncio.StreamReader, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert line.endswith(b"\n")
        prefix, _, rest = line.decode().partition(",")
        fields = rest.rstrip("\n").split(",")
        assert len(fields) == len(HEADER)
        assert fields[0] == prefix  # the line is "<id>," + the CDR file's columns
        ids.append(int(prefix))
    return ids


def test_feed_survives_reconnects_without_gaps_or_duplicates(factory: sessionmaker[Session], tenant: Tenant) -> None:
    async def scenario() -> None:
        feed = CdrFeed(factory, poll_s=0.2, resume_wait_s=0.3)
        await feed.start("127.0.0.1", 0)
        writer = Writer(factory, tenant, feed)
        try:
            await asyncio.to_thread(writer.write, 3)  # before anyone connects: not sent to a live-only client
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            await asyncio.sleep(0.5)  # no RESUME: live from now on
            thread = threading.Thread(target=writer.write, args=(20,))
            thread.start()
            received = await read_ids(reader, 8)
            conn.close()  # drop mid-stream while CDRs keep coming
            await asyncio.sleep(0.1)
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            conn.write(f"RESUME {received[-1]}\n".encode())
            received += await read_ids(reader, 12)
            await asyncio.to_thread(thread.join, TIMEOUT)
            assert received == writer.ids[3:]  # exactly the CDRs after connecting, in order, once

            conn.close()
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            conn.write(b"RESUME 0\n")  # a new consumer replays everything
            assert await read_ids(reader, 23) == writer.ids
            await asyncio.to_thread(writer.write, 1)
            assert await read_ids(reader, 1) == writer.ids[-1:]
            conn.close()

            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            conn.write(b"GIMME\n")
            assert (await asyncio.wait_for(reader.readline(), TIMEOUT)).startswith(b"ERR ")
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed
            conn.close()
        finally:
            await feed.stop()

    asyncio.run(scenario())


@given(st.text(max_size=40))
def test_parse_resume_accepts_only_resume_and_digits(text: str) -> None:
    try:
        value = parse_resume(text)
    except ValueError:
        return
    assert value >= 0 and text.strip().upper().startswith("RESUME")


def test_garbage_and_overlong_lines_get_an_error_and_the_server_lives_on(
    factory: sessionmaker[Session], tenant: Tenant
) -> None:
    async def scenario() -> None:
        feed = CdrFeed(factory, poll_s=0.2, resume_wait_s=2.0)
        await feed.start("127.0.0.1", 0)
        try:
            for junk in (b"\xff\xfe\x00RESUME\n", b"R" * 200_000 + b"\n", b"RESUME 99999999999999999999999\n"):
                reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
                conn.write(junk)
                reply = await asyncio.wait_for(reader.readline(), TIMEOUT)
                conn.close()
                assert reply.startswith(b"ERR ")
            writer = Writer(factory, tenant, feed)
            await asyncio.to_thread(writer.write, 1)
            reader, conn = await asyncio.open_connection("127.0.0.1", feed.port)
            conn.write(b"RESUME 0\n")
            assert await read_ids(reader, 1) == writer.ids
            conn.close()
        finally:
            await feed.stop()

    asyncio.run(scenario())
