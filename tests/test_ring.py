"""The frame ring: slot bookkeeping (``RingIndex``) and shared pixels (``Ring``)."""

from __future__ import annotations

import os
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcapture._backend.memory import SharedBlock
from rlcapture._backend.ring import SLOT_ALIGN, Ring, RingIndex

# An operation is ("acquire",) or ("release", count); counts may exceed what is
# in use, so the errors are exercised too.
ops = st.lists(
    st.one_of(
        st.just(("acquire", 0)),
        st.tuples(st.just("release"), st.integers(min_value=-2, max_value=10)),
    ),
    max_size=200,
)


@settings(max_examples=300)
@given(slots=st.integers(min_value=1, max_value=9), ops=ops)
def test_ring_index_matches_model(slots: int, ops: list[tuple[str, int]]) -> None:
    index = RingIndex(slots)
    in_use: deque[int] = deque()  # slots handed out and not given back, oldest first
    next_slot = 0  # FIFO: slots are handed out in order 0, 1, ..., slots-1, 0, ...
    handed = given_back = 0
    for op, count in ops:
        if op == "acquire":
            if len(in_use) >= slots:
                with pytest.raises(RuntimeError, match="full"):
                    index.acquire()
            else:
                slot = index.acquire()
                assert slot == next_slot
                assert slot not in in_use, "handed out a slot that is still in use"
                assert 0 <= slot < slots
                in_use.append(slot)
                next_slot = (next_slot + 1) % slots
                handed += 1
        else:
            if count < 0 or count > len(in_use):
                with pytest.raises(RuntimeError, match="gave back"):
                    index.release(count)
            else:
                index.release(count)
                for _ in range(count):
                    in_use.popleft()  # the consumer frees the oldest slots first
                given_back += count
        # Counters agree with the model after every operation, failed ones included.
        assert index.head == handed
        assert index.tail == given_back
        assert index.in_use == len(in_use) == index.head - index.tail
        assert index.free == slots - len(in_use)
        assert 0 <= index.free <= slots
        if in_use:
            assert in_use[0] == index.tail % slots
            assert list(in_use) == [(index.tail + i) % slots for i in range(len(in_use))]


def test_ring_index_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        RingIndex(0)


def test_ring_index_full_then_free() -> None:
    index = RingIndex(3)
    assert [index.acquire() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(RuntimeError):
        index.acquire()
    index.release(2)
    assert [index.acquire() for _ in range(2)] == [0, 1]
    with pytest.raises(RuntimeError):
        index.release(4)
    assert index.in_use == 3  # a refused release changes nothing


@pytest.mark.parametrize("frame_bytes", [1, 63, 64, 65, 600 * 400 * 3])
def test_stride_is_aligned(frame_bytes: int) -> None:
    stride = Ring.stride_for(frame_bytes)
    assert stride % SLOT_ALIGN == 0
    assert frame_bytes <= stride < frame_bytes + SLOT_ALIGN or stride == SLOT_ALIGN


def test_ring_round_trip_through_a_second_mapping() -> None:
    """A producer writes slots; the same memory mapped from a dup'd fd reads them back."""
    shape = (37, 51, 3)  # odd sizes: slots are padded to the alignment
    slots = 4
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(10)]
    producer = Ring.create(slots, int(np.prod(shape)), name="rlcapture-test")
    consumer = Ring.attach(os.dup(producer.fd), producer.slots, producer.slot_bytes)
    try:
        assert consumer.fd != producer.fd
        assert producer.slot_bytes % SLOT_ALIGN == 0
        index = RingIndex(slots)
        pending: deque[tuple[int, np.ndarray]] = deque()
        for i, frame in enumerate(frames):
            if not index.free:  # the consumer reads the oldest slot and gives it back
                slot, expected = pending.popleft()
                np.testing.assert_array_equal(consumer.view(slot, shape), expected)
                index.release(1)
            slot = index.acquire()
            np.copyto(producer.view(slot, shape), frame)
            pending.append((slot, frame))
            assert slot == i % slots
        while pending:
            slot, expected = pending.popleft()
            np.testing.assert_array_equal(consumer.view(slot, shape), expected)
        # Slots do not overlap: the last `slots` frames are all still intact.
        for i in range(slots):
            k = len(frames) - slots + i
            np.testing.assert_array_equal(consumer.view(k % slots, shape), frames[k])
        # The memory outlives the creator's mapping and descriptor.
        producer.close()
        np.testing.assert_array_equal(consumer.view(9 % slots, shape), frames[9])
    finally:
        producer.close()
        consumer.close()


def test_shared_block_close_is_idempotent_and_anonymous() -> None:
    block = SharedBlock(1000, "rlcapture-test")
    target = os.readlink(f"/proc/self/fd/{block.fd}")
    assert target.startswith("/memfd:rlcapture-test")  # no name in /dev/shm
    block.buf[:3] = b"abc"
    other = SharedBlock.attach(os.dup(block.fd), block.size)
    assert bytes(other.buf[:3]) == b"abc"
    block.close()
    block.close()
    assert block.fd == -1
    with pytest.raises(ValueError):
        _ = block.buf
    other.close()
