"""The sealed stream (``Sealer.stream_writer`` / ``stream_reader``): what the index snapshot is
written as once it outgrows one AES-GCM message. Every way of cutting, reordering, splicing or
flipping its frames must fail to open, and a write that fails must leave the old file."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import store.sealing
from store.sealing import STREAM_MAGIC, Sealer, SealError

AAD = "test-stream"
HEADER = len(STREAM_MAGIC) + 16
FRAME_HEADER = struct.Struct(">IB")


@pytest.fixture(autouse=True)
def small_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.sealing, "FRAME_BYTES", 100)  # many frames from a few bytes


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(os.urandom(32))


def write(sealer: Sealer, path: Path, *parts: bytes) -> None:
    with sealer.stream_writer(path, AAD) as out:
        for part in parts:
            out.write(part)


def read(sealer: Sealer, path: Path, aad: str = AAD) -> bytes:
    with sealer.stream_reader(path, aad) as stream:
        return stream.read()


def frames(path: Path) -> tuple[bytes, list[bytes]]:
    """(the header, each frame with its own header) of a sealed stream file."""
    data = path.read_bytes()
    header, rest, found = data[:HEADER], data[HEADER:], []
    while rest:
        size, _ = FRAME_HEADER.unpack_from(rest)
        found.append(rest[: FRAME_HEADER.size + size])
        rest = rest[FRAME_HEADER.size + size :]
    return header, found


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 250, 1000])
def test_what_is_written_reads_back_whole_across_frames(
    sealer: Sealer, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    path = tmp_path / "s"
    write(sealer, path, data[:7], data[7:150], data[150:])  # writes that straddle frames
    assert read(sealer, path) == data
    with sealer.stream_reader(path, AAD) as stream:  # and in small reads
        pieces = []
        while piece := stream.read(33):
            pieces.append(piece)
    assert b"".join(pieces) == data
    if size >= 16:
        assert data[:16] not in path.read_bytes()  # sealed, not copied


def test_the_wrong_key_or_purpose_does_not_open(sealer: Sealer, tmp_path: Path) -> None:
    path = tmp_path / "s"
    write(sealer, path, b"x" * 300)
    with pytest.raises(SealError):
        read(Sealer(os.urandom(32)), path)
    with pytest.raises(SealError):
        read(sealer, path, aad="another-purpose")


def test_a_stream_cut_at_a_frame_boundary_does_not_open(sealer: Sealer, tmp_path: Path) -> None:
    path = tmp_path / "s"
    write(sealer, path, os.urandom(350))
    header, found = frames(path)
    assert len(found) == 4
    path.write_bytes(header + b"".join(found[:-1]))  # every frame whole, the last one gone
    with pytest.raises(SealError, match="cut short"):
        read(sealer, path)
    path.write_bytes(header + b"".join(found)[:-5])  # cut inside the last frame
    with pytest.raises(SealError, match="cut short"):
        read(sealer, path)


@pytest.mark.parametrize("attack", ["swap", "repeat", "drop", "flag", "append", "splice", "header"])
def test_frames_moved_repeated_flagged_or_spliced_do_not_open(
    sealer: Sealer, tmp_path: Path, attack: str
) -> None:
    path, other = tmp_path / "s", tmp_path / "other"
    write(sealer, path, os.urandom(350))
    write(sealer, other, os.urandom(350))  # another stream, same key and purpose
    header, found = frames(path)
    other_header, other_found = frames(other)
    if attack == "swap":
        forged = header + found[1] + found[0] + b"".join(found[2:])
    elif attack == "repeat":
        forged = header + found[0] + b"".join(found)
    elif attack == "drop":
        forged = header + b"".join(found[1:])
    elif attack == "flag":  # the first frame claims to be the last
        size, _ = FRAME_HEADER.unpack_from(found[0])
        forged = header + FRAME_HEADER.pack(size, 1) + found[0][FRAME_HEADER.size :]
    elif attack == "append":
        forged = header + b"".join(found) + other_found[-1]
    elif attack == "splice":  # the same frame number, from another stream
        forged = header + other_found[0] + b"".join(found[1:])
    else:  # another stream's header over these frames
        forged = other_header + b"".join(found)
    path.write_bytes(forged)
    with pytest.raises(SealError):
        read(sealer, path)


def test_a_frame_length_past_the_limit_is_refused_before_reading(
    sealer: Sealer, tmp_path: Path
) -> None:
    path = tmp_path / "s"
    header = STREAM_MAGIC + os.urandom(16)
    path.write_bytes(header + FRAME_HEADER.pack(2**31, 0) + b"x" * 10)
    with pytest.raises(SealError, match="damaged"):
        read(sealer, path)
    path.write_bytes(b"something else entirely, long enough for a header")
    with pytest.raises(SealError, match="not a sealed stream"):
        read(sealer, path)


def test_a_write_that_fails_leaves_the_old_file(sealer: Sealer, tmp_path: Path) -> None:
    path = tmp_path / "s"
    write(sealer, path, b"the old contents")
    with pytest.raises(RuntimeError), sealer.stream_writer(path, AAD) as out:
        out.write(os.urandom(500))
        raise RuntimeError("the disk filled")
    assert read(sealer, path) == b"the old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary file left
