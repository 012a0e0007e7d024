"""Files as one stream, and back: how the index snapshot carries chromadb's folder through a
sealed stream (``store.retrieval``).

Not tar: Python's tarfile reads a stream in 16 KiB pieces joined into new byte strings, and
that was a third of the time a million-chunk index took to unpack. Here each file is a header
(the length of its name, its size), its name and its bytes, copied through one buffer that is
used again for every piece; a zero-length name ends the bundle.

What is unpacked is checked as if it came from a stranger, although the bundle was sealed by
the owner's key: names are relative paths of plain words (no "..", nothing absolute), files
are created new (never through a link, never over another file), sizes are read whole or the
bundle is refused as cut short.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from store.errors import StoreError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12


class Writable(Protocol):
    def write(self, data: Buffer, /) -> int | None: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes | None: ...

    def readinto(self, buffer: Buffer, /) -> int | None: ...


_HEADER = struct.Struct(">HQ")  # the name's length in bytes, the file's size
_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # no "." or "..": they start with a dot
_MAX_NAME = 1024
_COPY_BYTES = 4 << 20


class BundleError(StoreError):
    """A bundle is damaged, cut short, or names a file it may not write."""


class BundleWriter:
    """Writes files into ``out``, one after another; ``close`` ends the bundle (and does not
    close ``out``)."""

    def __init__(self, out: Writable) -> None:
        self._out = out
        self._buffer = bytearray(_COPY_BYTES)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._header(name, len(data))
        self._out.write(data)

    def add_file(self, name: str, path: Path) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._header(name, size)
            view = memoryview(self._buffer)
            left = size
            while left:
                got = f.readinto(view[: min(left, _COPY_BYTES)])
                if not got:
                    raise BundleError(f"{path} became shorter while it was copied")
                self._out.write(view[:got])
                left -= got

    def add_folder(self, folder: Path, name: str) -> None:
        """Every file under ``folder`` (sorted; links and other special files are refused)."""
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise BundleError(f"{path} is not a plain file or folder")
            if path.is_file():
                self.add_file(f"{name}/{path.relative_to(folder).as_posix()}", path)

    def close(self) -> None:
        self._out.write(_HEADER.pack(0, 0))

    def _header(self, name: str, size: int) -> None:
        encoded = name.encode()
        _check_name(name, len(encoded))
        self._out.write(_HEADER.pack(len(encoded), size) + encoded)


def unpack_bundle(stream: Readable, folder: Path) -> list[str]:
    """Write the bundle's files under ``folder`` (which must exist); return their names."""
    names: list[str] = []
    buffer = memoryview(bytearray(_COPY_BYTES))
    while True:
        name_length, size = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
        if name_length == 0:
            break
        if name_length > _MAX_NAME:
            raise BundleError("the bundle is damaged: a name too long")
        try:
            name = _read_exactly(stream, name_length).decode()
        except UnicodeDecodeError:
            raise BundleError("the bundle is damaged: a name that is not text") from None
        _check_name(name, name_length)
        path = folder.joinpath(*name.split("/"))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL | O_NOFOLLOW: a new file, never one already there nor through a link
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            left = size
            while left:
                got = stream.readinto(buffer[: min(left, _COPY_BYTES)])
                if not got:
                    raise BundleError(f"the bundle is cut short inside {name}")
                out.write(buffer[:got])
                left -= got
        names.append(name)
    if stream.read(1):
        raise BundleError("the bundle goes on after its end")
    return names


def _check_name(name: str, length: int) -> None:
    parts = name.split("/")
    if not 0 < length <= _MAX_NAME or not all(_PART.fullmatch(part) for part in parts):
        raise BundleError(f"the bundle names a file it may not hold: {name!r}")


def _read_exactly(stream: Readable, size: int) -> bytes:
    data = stream.read(size) or b""
    while len(data) < size:  # a sealed stream's reads end at its frames' ends
        more = stream.read(size - len(data)) or b""
        if not more:
            raise BundleError("the bundle is cut short")
        data += more
    return data
