"""The frame ring: fixed slots of pixels in anonymous shared memory.

One ring belongs to one producer (single producer, single consumer: the
encoder). The producer writes a frame into the slot ``seq % slots`` and tells
the encoder which slot it filled over the channel (see ``channel.py``); the
encoder frees slots strictly in order and returns one credit per freed slot.
So the only shared state is the pixels: who may touch a slot is decided by the
credit count, never by indices both sides write to memory.
"""

from __future__ import annotations

import numpy as np

from .memory import SharedBlock

__all__ = ["RingIndex", "Ring", "SLOT_ALIGN"]

#: Slots start on cache-line boundaries.
SLOT_ALIGN = 64


class RingIndex:
    """The producer's bookkeeping of which slots it may write.

    ``head`` counts slots handed out, ``tail`` counts slots the consumer gave
    back. The slot for the next frame is ``head % slots``; it is free while
    ``head - tail < slots``. Both counters only grow.
    """

    __slots__ = ("slots", "head", "tail")

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a ring needs at least one slot")
        self.slots = slots
        self.head = 0
        self.tail = 0

    @property
    def in_use(self) -> int:
        """Slots written and not yet given back."""
        return self.head - self.tail

    @property
    def free(self) -> int:
        """Slots the producer may write now."""
        return self.slots - (self.head - self.tail)

    def acquire(self) -> int:
        """Take the next slot; the caller must have checked :attr:`free`."""
        if self.head - self.tail >= self.slots:
            raise RuntimeError("ring is full")
        slot = self.head % self.slots
        self.head += 1
        return slot

    def release(self, count: int) -> None:
        """Record ``count`` slots given back by the consumer, oldest first."""
        if count < 0 or self.tail + count > self.head:
            raise RuntimeError(
                f"consumer gave back {count} slots but only {self.in_use} were in use"
            )
        self.tail += count


class Ring:
    """A block of ``slots`` equal slots of ``slot_bytes`` each.

    The producer creates it (``Ring.create``) and sends :attr:`fd` to the
    encoder, which maps the same memory with ``Ring.attach``.
    """

    def __init__(self, block: SharedBlock, slots: int, slot_bytes: int) -> None:
        self.block = block
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.array: np.ndarray | None = np.ndarray(
            (slots, slot_bytes), dtype=np.uint8, buffer=block.buf
        )

    @staticmethod
    def stride_for(frame_bytes: int) -> int:
        """Bytes per slot for frames of ``frame_bytes``, rounded to the alignment."""
        return max(SLOT_ALIGN, -(-frame_bytes // SLOT_ALIGN) * SLOT_ALIGN)

    @classmethod
    def create(cls, slots: int, frame_bytes: int, name: str = "rlcapture-ring") -> Ring:
        stride = cls.stride_for(frame_bytes)
        return cls(SharedBlock(slots * stride, name), slots, stride)

    @classmethod
    def attach(cls, fd: int, slots: int, slot_bytes: int) -> Ring:
        return cls(SharedBlock.attach(fd, slots * slot_bytes), slots, slot_bytes)

    @property
    def fd(self) -> int:
        return self.block.fd

    def view(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        """The pixels of ``slot`` as an array of ``shape`` (a view, no copy)."""
        assert self.array is not None, "ring is closed"
        n = 1
        for d in shape:
            n *= d
        return self.array[slot, :n].reshape(shape)

    def close(self) -> None:
        self.array = None
        self.block.close()
