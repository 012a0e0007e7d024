"""Envelope encryption for everything the owner gives the node.

The keyring (``identity.keyring``) unwraps one random 32-byte *data key*. From it we derive,
with HKDF, a sealing key (AES-256-GCM) and a MAC key (HMAC-SHA256). Every sealed value
carries associated data naming what it is (record kind, record id, field), so a ciphertext
copied into another row or field fails to open instead of being read as something else.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from store.errors import StoreError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

# One byte of format version in front of every sealed value, so the format can change later.
_VERSION = b"\x01"
_NONCE_BYTES = 12
# What sealing adds to a value: the version byte, the nonce and AES-GCM's 16-byte tag.
SEAL_OVERHEAD = 1 + _NONCE_BYTES + 16
# A sealed stream (``Sealer.stream_writer``): this magic, a random stream id, then frames.
STREAM_MAGIC = b"flurry sealed stream v1\n"
_STREAM_ID_BYTES = 16
FRAME_BYTES = 4 << 20  # plaintext per frame
# Before each frame: its sealed length, and 1 if it is the last frame (0 if not).
_FRAME_HEADER = struct.Struct(">IB")


class SealError(StoreError):
    """A sealed value could not be opened: wrong key, tampered bytes, or moved to another place."""


def _derive(data_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"flurry " + purpose).derive(
        data_key
    )


class Sealer:
    """Seals and opens values under the node's data key."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"seal v1"))
        self._mac_key = _derive(data_key, b"mac v1")

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad.encode())

    def seal_into(self, plaintext: bytes | memoryview, aad: str, out: memoryview) -> int:
        """Seal into the front of ``out`` rather than a new bytes object; returns the bytes
        written (``len(plaintext) + SEAL_OVERHEAD``). A backup seals tens of thousands of chunks
        straight into one pack buffer this way, without a copy of each."""
        size = len(plaintext) + SEAL_OVERHEAD
        nonce = os.urandom(_NONCE_BYTES)
        out[0] = _VERSION[0]
        out[1 : 1 + _NONCE_BYTES] = nonce
        self._aead.encrypt_into(nonce, plaintext, aad.encode(), out[1 + _NONCE_BYTES : size])
        return size

    def unseal(self, sealed: bytes | memoryview, aad: str) -> bytes:
        """Open a sealed value. A memoryview (of a mapped file) is opened without a copy of it:
        for the index snapshot, hundreds of megabytes."""
        if len(sealed) < SEAL_OVERHEAD or sealed[0] != _VERSION[0]:
            raise SealError(f"not a sealed value ({aad})")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, aad.encode())
        except InvalidTag:
            raise SealError(
                f"sealed value does not open ({aad}): wrong key, tampered, or moved"
            ) from None

    def mac(self, data: bytes, purpose: str) -> bytes:
        """A keyed hash: equal inputs give equal tags, but nobody without the key can test a guess."""
        return hmac.new(self._mac_key, purpose.encode() + b"\x00" + data, hashlib.sha256).digest()

    def write_file(self, path: Path, data: bytes, aad: str) -> None:
        """Seal ``data`` into ``path`` atomically: a crash leaves either the old file or the new one."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(self.seal(data, aad))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def read_file(self, path: Path, aad: str) -> bytes:
        return self.unseal(path.read_bytes(), aad)

    def stream_writer(self, path: Path, aad: str) -> SealedStreamWriter:
        """A file object that seals what is written to it into ``path``, in frames."""
        return SealedStreamWriter(self, path, aad)

    def stream_reader(self, path: Path, aad: str) -> SealedStreamReader:
        """A file object that reads back what a ``stream_writer`` wrote."""
        return SealedStreamReader(self, path, aad)


def _frame_aad(aad: str, stream_id: bytes, index: int, final: bool) -> str:
    return f"{aad}\x00{stream_id.hex()}\x00{index}\x00{int(final)}"


class SealedStreamWriter(io.RawIOBase):
    """Seals a stream too big for one AES-GCM message (the library stops at 2 GiB; the index
    snapshot of a million chunks is about that) and too big to hold twice in memory.

    The STREAM construction (Hoang, Reyhanitabar, Rogaway and Vizár, 2015), as age and Tink use
    it: the plaintext is cut into frames, each sealed with associated data that names the
    stream (a random id in the header), the frame's number and whether it is the last. A frame
    moved, dropped, repeated or taken from another stream, or a stream cut short, fails to
    open. Written to a temporary file and renamed over ``path`` at ``close``: a crash, or an
    exception out of the ``with`` block, leaves the old file.
    """

    def __init__(self, sealer: Sealer, path: Path, aad: str) -> None:
        super().__init__()
        self._sealer, self._path, self._aad = sealer, path, aad
        self._tmp = path.with_name(path.name + ".tmp")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in close() or abort()
        self._stream_id = os.urandom(_STREAM_ID_BYTES)
        self._file.write(STREAM_MAGIC + self._stream_id)
        self._buffer = bytearray()
        self._frames = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        view = memoryview(data)
        self._buffer += view
        while len(self._buffer) > FRAME_BYTES:  # ">": only an empty stream has an empty frame
            self._frame(bytes(self._buffer[:FRAME_BYTES]), final=False)
            del self._buffer[:FRAME_BYTES]
        return view.nbytes

    def _frame(self, plaintext: bytes, final: bool) -> None:
        aad = _frame_aad(self._aad, self._stream_id, self._frames, final)
        sealed = self._sealer.seal(plaintext, aad)
        self._file.write(_FRAME_HEADER.pack(len(sealed), int(final)) + sealed)
        self._frames += 1

    def close(self) -> None:
        """Seal the last frame and put the file in place (atomically, synced)."""
        if self.closed:
            return
        try:
            self._frame(bytes(self._buffer), final=True)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self._path)
        except BaseException:
            self.abort()
            raise
        super().close()
        _fsync_dir(self._path.parent)

    def abort(self) -> None:
        """Drop what was written; ``path`` keeps what it held."""
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        super().close()

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class SealedStreamReader(io.RawIOBase):
    """Reads a sealed stream back, a frame at a time: reading raises ``SealError`` at the first
    frame that does not open, and at the end of a stream whose last frame is missing."""

    def __init__(self, sealer: Sealer, path: Path, aad: str) -> None:
        super().__init__()
        self._sealer, self._aad = sealer, aad
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        header = self._file.read(len(STREAM_MAGIC) + _STREAM_ID_BYTES)
        if len(header) < len(STREAM_MAGIC) + _STREAM_ID_BYTES or not header.startswith(
            STREAM_MAGIC
        ):
            self._file.close()
            raise SealError(f"not a sealed stream ({aad})")
        self._stream_id = header[len(STREAM_MAGIC) :]
        self._frames = 0
        self._buffer = b""
        self._offset = 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Buffer) -> int:
        """Fill ``target`` from the current frame (fewer bytes at a frame's end; 0 at the end)."""
        if self._offset == len(self._buffer):
            if self._ended:
                return 0
            self._next_frame()
        view = memoryview(target).cast("B")
        count = min(len(view), len(self._buffer) - self._offset)
        view[:count] = self._buffer[self._offset : self._offset + count]
        self._offset += count
        return count

    def _next_frame(self) -> None:
        header = self._file.read(_FRAME_HEADER.size)
        if len(header) < _FRAME_HEADER.size:
            raise SealError(f"the sealed stream is cut short ({self._aad})")
        size, final = _FRAME_HEADER.unpack(header)
        if size > FRAME_BYTES + SEAL_OVERHEAD:  # a length from a stranger: checked before reading
            raise SealError(f"the sealed stream is damaged ({self._aad})")
        sealed = self._file.read(size)
        if len(sealed) < size:
            raise SealError(f"the sealed stream is cut short ({self._aad})")
        # The flag is in the associated data too: a "last" flag set on another frame fails here.
        self._buffer = self._sealer.unseal(
            sealed, _frame_aad(self._aad, self._stream_id, self._frames, bool(final))
        )
        self._offset = 0
        self._frames += 1
        if final:
            self._ended = True
            if self._file.read(1):
                raise SealError(f"the sealed stream goes on after its last frame ({self._aad})")

    def close(self) -> None:
        self._file.close()
        super().close()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
