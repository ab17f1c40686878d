"""Receipts to MTs (:mod:`bridge.smpp.delivery`): the message-id cache, per-part delivery, held orphans."""

from __future__ import annotations

from bridge.smpp.delivery import (
    ORPHAN_POLL_S,
    Delivered,
    DeliveryTracker,
    MessageIds,
    Orphans,
    Undeliverable,
)
from bridge.smpp.receipt import DeliveryReceipt


def receipt(message_id: str, stat: str = "DELIVRD", err: str = "000") -> DeliveryReceipt:
    return DeliveryReceipt(message_id=message_id, stat=stat, err=err)


def test_message_ids_map_to_the_mt_and_its_part_count_and_forget_the_oldest() -> None:
    ids = MessageIds(capacity=3)
    ids.remember(1, ("a",))
    ids.remember(2, ("b", "c"))
    assert ids.get("a") == (1, 1) and ids.get("c") == (2, 2) and ids.get("x") is None
    ids.remember(3, ("d",))
    assert len(ids) == 3 and ids.get("a") is None and ids.get("d") == (3, 1)


def test_a_single_part_mt_is_delivered_by_its_receipt() -> None:
    tracker = DeliveryTracker()
    assert tracker.on_receipt(receipt("a", "ENROUTE"), 1, 1) is None  # intermediate: nothing settled
    assert tracker.on_receipt(receipt("a"), 1, 1) == Delivered(1)
    assert len(tracker) == 0


def test_a_concatenated_mt_is_delivered_when_every_part_was() -> None:
    tracker = DeliveryTracker()
    assert tracker.on_receipt(receipt("a"), 5, 3) is None
    assert tracker.on_receipt(receipt("a"), 5, 3) is None  # the same part twice counts once
    assert tracker.on_receipt(receipt("b"), 5, 3) is None
    assert tracker.parts(5) == {"a", "b"}
    assert tracker.on_receipt(receipt("c"), 5, 3) == Delivered(5)
    assert len(tracker) == 0


def test_one_undeliverable_part_settles_the_mt() -> None:
    tracker = DeliveryTracker()
    tracker.on_receipt(receipt("a"), 5, 2)
    assert tracker.on_receipt(receipt("b", "UNDELIV", "012"), 5, 2) == Undeliverable(5, "UNDELIV err:012")
    assert len(tracker) == 0


def test_parts_are_shared_with_the_database_count_until_forgotten() -> None:
    tracker = DeliveryTracker()
    tracker.parts(9).add("x")
    assert tracker.on_receipt(receipt("y"), 9, 2) == Delivered(9)
    tracker.parts(9)
    tracker.forget(9)
    tracker.forget(9)
    assert len(tracker) == 0


def test_orphans_are_held_until_their_deadline() -> None:
    orphans = Orphans(retry_s=10.0)
    assert not orphans and orphans.next_check(0.0) is None
    orphans.hold(receipt("a"), 100.0)
    orphans.hold(receipt("b"), 105.0)
    assert len(orphans) == 2 and orphans.next_check(106.0) == 106.0 + ORPHAN_POLL_S
    held = orphans.take()
    assert not orphans and [(d, r.message_id) for d, r in held] == [(110.0, "a"), (115.0, "b")]
    kept = [r.message_id for d, r in held if orphans.keep(d, r, 110.0)]
    assert kept == ["b"] and len(orphans) == 1  # "a" reached its deadline: given up
