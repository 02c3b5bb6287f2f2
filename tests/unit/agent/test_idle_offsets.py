"""``agent.live.delivery.IdleOffsets``: offsets-only partitions wait for their next transaction."""

from __future__ import annotations

import pytest

from agent.live.delivery import IdleOffsets
from feeds.ports import OutRecord, TopicPartition

MD0, MD1, FILLS0 = TopicPartition("md", 0), TopicPartition("md", 1), TopicPartition("fills", 0)
REC = OutRecord("children", b"{}", key=b"P-1")


def test_offsets_only_wait_and_go_with_the_partitions_next_transaction() -> None:
    idle = IdleOffsets()
    assert idle.route({0: ([], {MD0: 10}), 1: ([], {MD1: 5})}, 1, 60.0) == {}
    assert idle.waiting(1)
    assert idle.route({0: ([], {MD0: 20, FILLS0: 3})}, 1, 60.0) == {}
    got = idle.route({0: ([REC], {MD0: 25})}, 1, 60.0)
    assert got == {0: ([REC], {MD0: 25, FILLS0: 3})}  # the newest offset of each partition, none lost
    assert idle.waiting(1)  # partition 1 still waits
    assert idle.route({1: ([REC], {})}, 1, 60.0) == {1: ([REC], {MD1: 5})}
    assert not idle.waiting(1)


def test_waiting_offsets_never_go_backwards() -> None:
    idle = IdleOffsets()
    idle.route({0: ([], {MD0: 30})}, 1, 60.0)
    assert idle.route({0: ([REC], {MD0: 12})}, 1, 60.0) == {0: ([REC], {MD0: 30})}


def test_overdue_offsets_commit_on_their_own() -> None:
    now = [100.0]
    idle = IdleOffsets(clock=lambda: now[0])
    assert idle.oldest_age(1) == -float("inf")
    assert idle.route({0: ([], {MD0: 10})}, 1, 1.0) == {}
    now[0] = 100.5
    assert idle.route({0: ([], {MD0: 12})}, 1, 1.0) == {}  # the oldest still counts from 100.0
    assert idle.oldest_age(1) == 0.5
    now[0] = 101.0
    assert idle.oldest_age(1) == 1.0
    assert idle.route({}, 1, 1.0) == {0: ([], {MD0: 12})}  # an empty step commits them
    assert not idle.waiting(1)


@pytest.mark.parametrize("wait_s", [0.0, -1.0])
def test_no_wait_commits_every_partition_at_once(wait_s: float) -> None:
    idle = IdleOffsets()
    idle.route({0: ([], {MD0: 10})}, 1, 60.0)
    groups = {1: ([], {MD1: 4})}
    assert idle.route(groups, 1, wait_s) == {1: ([], {MD1: 4}), 0: ([], {MD0: 10})}


def test_a_rebalance_drops_waiting_offsets() -> None:
    idle = IdleOffsets()
    idle.route({0: ([], {MD0: 10})}, 1, 60.0)
    assert not idle.waiting(2)  # another generation: the partition's rows are read again by its owner
    assert idle.route({0: ([REC], {})}, 2, 60.0) == {0: ([REC], {})}
