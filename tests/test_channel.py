"""The producer/encoder channel: message framing, descriptor passing, handshake."""

from __future__ import annotations

import itertools
import socket
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rlcapture
from rlcapture._backend import channel
from rlcapture._backend.channel import (
    FRAME,
    MAP,
    MSG_BYE,
    MSG_END,
    MSG_FRAME,
    MSG_HELLO,
    MSG_MAP,
    Endpoint,
    MessageReader,
    pack_json,
)
from rlcapture._backend.producer import FrameProducer


def _stream() -> tuple[bytes, list[tuple[int, object]], list[int]]:
    """A realistic producer stream: its bytes, the messages it holds, and fds."""
    msgs: list[tuple[int, object]] = []
    parts: list[bytes] = []

    def add(kind: int, body: object, raw: bytes) -> None:
        msgs.append((kind, body))
        parts.append(raw)

    hello = {
        "token": "t" * 32,
        "name": "worker 0 (envs 0-1)",
        "envs": [0, 1],
        "fps": 50.0,
        "ü": "é",
    }
    add(MSG_HELLO, hello, pack_json(MSG_HELLO, hello))
    add(MSG_MAP, (1, 8, 720064), bytes([MSG_MAP]) + MAP.pack(1, 8, 720064))
    for i in range(3):
        tags = (i % 8, i % 2, 0, i, 400, 600, 3)
        add(MSG_FRAME, tags, bytes([MSG_FRAME]) + FRAME.pack(*tags))
    end = {"env": 1, "episode": 0, "seed": 2**40, "return": 1.5, "length": 3, "end": "terminated"}
    add(MSG_END, end, pack_json(MSG_END, end))
    add(MSG_MAP, (2, 4, 64), bytes([MSG_MAP]) + MAP.pack(2, 4, 64))
    big = (7, 2**31, 2**32 - 1, 2**63 + 5, 1, 16384, 1)
    add(MSG_FRAME, big, bytes([MSG_FRAME]) + FRAME.pack(*big))
    empty: dict[str, object] = {}
    add(MSG_END, empty, pack_json(MSG_END, empty))
    add(MSG_BYE, None, bytes([MSG_BYE]))
    return b"".join(parts), msgs, [101, 102]  # one (fake) fd per M message


STREAM, MESSAGES, FDS = _stream()


def _feed_in_pieces(cuts: list[int]) -> tuple[list[tuple[int, object]], list[int]]:
    reader = MessageReader()
    got: list[tuple[int, object]] = []
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    fds = list(FDS)
    for a, b in itertools.pairwise(bounds):
        piece = STREAM[a:b]
        # A descriptor arrives with the first byte of its M message (as SCM_RIGHTS
        # rides on the sendmsg that starts the message).
        with_fds = [fds.pop(0) for start in MAP_OFFSETS if a <= start < b]
        reader.feed(piece, with_fds)
        got.extend(reader.messages())
    return got, reader.fds


def _map_offsets() -> list[int]:
    """Byte offsets of the M messages in the stream."""
    offsets, pos, reader = [], 0, MessageReader()
    for i in range(len(STREAM)):
        reader.feed(STREAM[i : i + 1], [])
        for kind, _ in reader.messages():
            if kind == MSG_MAP:
                offsets.append(pos)
            pos = i + 1
    return offsets


MAP_OFFSETS = _map_offsets()
assert len(MAP_OFFSETS) == len(FDS) == 2


def test_whole_stream_parses() -> None:
    reader = MessageReader()
    reader.feed(STREAM, FDS)
    assert reader.messages() == MESSAGES
    assert reader.fds == FDS
    assert reader.messages() == []  # nothing left over


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        got, _ = _feed_in_pieces([cut])
        assert got == MESSAGES, f"split at byte {cut}"


def test_one_byte_at_a_time() -> None:
    got, fds = _feed_in_pieces(list(range(len(STREAM))))
    assert got == MESSAGES
    assert fds == FDS  # handed out in arrival order (the encoder pops them per M)


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_split_at_random_points(cuts: list[int]) -> None:
    got, fds = _feed_in_pieces(cuts)
    assert got == MESSAGES
    assert fds == FDS


@given(st.binary(min_size=1, max_size=1).filter(lambda b: b[0] not in b"HMFEB"))
def test_unknown_message_type_is_refused(first: bytes) -> None:
    reader = MessageReader()
    reader.feed(first + b"\0" * 40, [])
    with pytest.raises(ValueError, match="unknown message type"):
        reader.messages()


def test_incomplete_message_waits() -> None:
    reader = MessageReader()
    reader.feed(STREAM[:-1], [])
    assert reader.messages() == MESSAGES[:-1]
    reader.feed(STREAM[-1:], [])
    assert reader.messages() == MESSAGES[-1:]


def test_descriptor_passes_over_a_real_socket() -> None:
    """listen/connect, then a memfd travels as SCM_RIGHTS with an M message."""
    from rlcapture._backend.ring import Ring

    listener, address, folder = channel.listen()
    assert folder is None and address.startswith("\0rlcapture-")  # abstract: no file
    client = channel.connect(address, 5.0)
    server, _ = listener.accept()
    ring = Ring.create(2, 64 * 64 * 3)
    try:
        assert channel.peer_uid_ok(server)
        ring.view(1, (64, 64, 3))[:] = 7
        socket.send_fds(
            client, [bytes([MSG_MAP]) + MAP.pack(1, ring.slots, ring.slot_bytes)], [ring.fd]
        )
        data, fds, _, _ = socket.recv_fds(server, 1 << 16, 4)
        reader = MessageReader()
        reader.feed(data, fds)
        [(kind, body)] = reader.messages()
        assert kind == MSG_MAP and body == (1, ring.slots, ring.slot_bytes)
        fd = reader.fds.pop(0)
        assert fd != ring.fd
        mapped = Ring.attach(fd, body[1], body[2])
        try:
            assert (mapped.view(1, (64, 64, 3)) == 7).all()
        finally:
            mapped.close()
    finally:
        ring.close()
        for s in (client, server, listener):
            s.close()


# -- handshake with a real encoder ------------------------------------------------
@pytest.mark.timeout(60)
def test_handshake_refusals(tmp_path) -> None:
    with rlcapture.Recorder(tmp_path / "out") as rec:
        bad = Endpoint(rec.endpoint.address, "0" * 32, rec.endpoint.transport)
        with pytest.raises(rlcapture.EncoderError, match=r"refused.*token"):
            FrameProducer(bad, [0])
        first = FrameProducer(rec.endpoint, [0, 1], name="first")
        try:
            with pytest.raises(
                rlcapture.EncoderError, match="env index 1 is already recorded by first"
            ):
                FrameProducer(rec.endpoint, [1, 2], name="second")
            other = FrameProducer(rec.endpoint, [2], name="third")  # a free index is fine
            other.close()
        finally:
            first.close()
        # Once the encoder has seen a producer leave, its envs may be claimed
        # again. (Leaving and being forgotten are not one step: a claim sent
        # right after a goodbye can still be refused, so retry briefly.)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                again = FrameProducer(rec.endpoint, [0, 1], name="again")
                break
            except rlcapture.EncoderError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert again.frame(0, 0, 0, np.zeros((16, 16, 3), np.uint8))
        again.end({"env": 0, "episode": 0})
        again.close()
        endpoint = rec.endpoint
    assert rec.summary == {"frames": 1, "episodes": 1, "videos": 1}
    with pytest.raises(rlcapture.EncoderError, match="cannot reach the encoder"):
        FrameProducer(endpoint, [0])
    with pytest.raises(rlcapture.ClosedError):
        again.frame(0, 1, 0, np.zeros((16, 16, 3), np.uint8))


def test_pack_json_round_trip() -> None:
    payload = {"a": [1, 2.5, None], "b": "x" * 1000}
    reader = MessageReader()
    reader.feed(pack_json(MSG_END, payload), [])
    assert reader.messages() == [(MSG_END, payload)]
