"""A backup repository: a folder of sealed, content-addressed objects and sealed snapshots.

Like restic's, but for one node. Layout of the folder:

    flurry-backup.json    format, version, and a value sealed under the repository's key: a
                          node whose data key differs cannot open it (another node's backups)
    keyring.json          the node's keyring as last backed up (sealed under the passphrase):
                          on a new box the folder and the passphrase are all a restore needs
    packs/ab/ab12…        pack files of ~16 MiB: sealed objects, one per distinct chunk, end to end
    index/<snapshot id>   sealed: which pack holds each object a backup wrote, at which offset
    snapshots/<id>        one sealed manifest per finished backup: files → object ids
    tmp/                  packs and files being written (left over only by a crash)
    lock                  held by a backup or a prune, so a prune never sweeps a running
                          backup's packs

Keys: HKDF from the node's data key (``backup_keys``) gives a root, and ``store.sealing.Sealer``
derives from it an AES-256-GCM key and an HMAC key, so the repository never shares a key with
the vault. An object's id is a keyed hash of its plaintext (BLAKE3 in keyed mode, under a key
derived from the HMAC key), not a plain hash: a plain hash would let anyone holding the folder
test whether a known file is in it. Version 1 repositories used HMAC-SHA256 for ids; keyed BLAKE3
hashes 8 KiB chunks about twice as fast (bench_backup), and a version 1 folder is refused with
a message saying to back up into a new folder. Every object, index file and
manifest is sealed with its id as associated data, so one cannot be passed off as another.

Crash safety: a pack is written in tmp/ and renamed into packs/; a backup closes its last pack,
syncs the file system once, then writes its index file and last its manifest, each by rename.
A backup killed at any moment leaves every finished snapshot whole; what it wrote before dying
is packs no index names (``verify`` reports them, ``prune`` removes them), or, killed between
index and manifest, objects that later backups reuse.

What a stranger's folder can do: nothing is read before its size is checked; an object is looked
up only by a validated hex id, never by a name a manifest gives; a manifest's file paths are
checked before anything is restored (``check_relative_path``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import io
import json
import mmap
import os
import re
import secrets
import struct
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import blake3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastcdc import fastcdc

from node.errors import NodeError
from node.home import try_lock
from store.sealing import SEAL_OVERHEAD, Sealer, SealError

FORMAT = "flurry-backup"
# 2: object ids by keyed BLAKE3 (1 used HMAC-SHA256; its ids would not match what this reads).
VERSION = 2
MANIFEST_FORMAT = "flurry-backup-snapshot"

# How files are cut into chunks (bench_backup measures each choice at 100k chunks):
# - a SQLite database (the vault) in fixed, page-aligned 8 KiB pieces: SQLite changes pages in
#   place and never shifts bytes, and a new row with a random id lands on pages all over the
#   file, so the smaller the piece the less a few new documents make new (4 KiB: 1.3% of the
#   vault new after 500 chunks added to 100k, 16 KiB: 3.5%, FastCDC at 16 KiB: 6.8%);
# - the index's plaintext by content-defined chunking (FastCDC) with small chunks: insertions
#   there (new ids in sorted lists) shift the bytes behind them, which fixed pieces cannot follow;
# - anything else (skills' code, models, config) by FastCDC with 64 KiB chunks.
SQLITE_MAGIC = b"SQLite format 3\x00"
PAGE_CHUNK = 8 * 1024
SMALL_CDC = (2 * 1024, 8 * 1024, 32 * 1024)  # min, average, max
LARGE_CDC = (16 * 1024, 64 * 1024, 256 * 1024)
MAX_CHUNK = LARGE_CDC[2]
# A file's chunk ids are themselves stored as objects of up to 1024 ids, so a snapshot's manifest
# stays small and a second snapshot shares the lists that did not change (restic's trees).
LIST_IDS = 1024
_ID_BYTES = 32

# Limits checked before reading anything from a repository, which may be a stranger's.
MAX_OBJECT_BYTES = max(MAX_CHUNK, LIST_IDS * _ID_BYTES) + SEAL_OVERHEAD
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
MAX_SMALL_FILE_BYTES = 1024 * 1024  # flurry-backup.json, keyring.json
MAX_FILES = 1_000_000
MAX_PATH_CHARS = 4096

OBJECT_ID = re.compile(r"[0-9a-f]{64}")
PACK_ID = re.compile(r"[0-9a-f]{32}")
SNAPSHOT_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")
# Objects are written into pack files of about this size: one file per chunk cost more in file
# creation than everything else a backup does (a file create is ~1 ms on a loaded disk).
PACK_BYTES = 16 * 1024 * 1024
# Objects are sealed straight into a buffer that goes to the pack file in writes of about this
# size, by a thread of its own: the write (to the disk, or into the page cache) then overlaps
# hashing and sealing. Several buffers, so sealing goes on while one is being written.
WRITE_BYTES = 1024 * 1024
_WRITE_BUFFERS = 4
# Packs are written with O_DIRECT where the file system takes it: from the buffers straight to
# the disk, not copied into the page cache. Nothing reads a backup's packs again soon, and
# copying 700 MB into new page-cache pages cost a backup more than sealing them (bench_backup);
# the syncfs before the index is written then has little left to flush. Direct writes must be
# whole aligned blocks: the buffers are page-aligned (mmap), every write but a pack's last is a
# multiple of _BLOCK, and the last goes after O_DIRECT is turned off for it.
_BLOCK = 4096
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux; elsewhere packs go through the page cache
# An index file, unsealed: this magic, then one entry per object (pack id, object id, offset, length).
_INDEX_MAGIC = b"flurry backup index v1\n"
_ENTRY = struct.Struct(">16s32sQI")
_CHECK_PLAINTEXT = b"flurry backup repository v1"
_CHECK_AAD = "flurry-backup repository"


class BackupError(NodeError):
    """A backup, restore or check cannot go on; the message says why and what to do."""


def backup_keys(data_key: bytes) -> Sealer:
    """The repository's sealer: its own root, derived from the data key (never the vault's keys)."""
    root = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"flurry backup v1").derive(
        data_key
    )
    return Sealer(root)


def object_aad(object_id: str) -> str:
    return f"flurry-backup object {object_id}"


def index_aad(name: str) -> str:
    return f"flurry-backup index {name}"


def snapshot_aad(snapshot_id: str) -> str:
    return f"flurry-backup snapshot {snapshot_id}"


def new_snapshot_id() -> str:
    """Sorts by time: the newest snapshot is the last name."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def cut(data: bytes | mmap.mmap, *, small: bool = False) -> Iterator[memoryview]:
    """The chunks of ``data`` (bytes, or a file mapped with ``mapped``): page-aligned for a
    SQLite database, else by FastCDC (``small``: 8 KiB on average, else 64 KiB).

    Each chunk is a view into ``data``, not a copy (a backup reads hundreds of megabytes); a
    caller keeps none of them past the next, so that a mapped file can be closed after."""
    view = memoryview(data)
    if bytes(view[: len(SQLITE_MAGIC)]) == SQLITE_MAGIC:
        for start in range(0, len(view), PAGE_CHUNK):
            yield view[start : start + PAGE_CHUNK]
        return
    low, average, high = SMALL_CDC if small else LARGE_CDC
    for c in fastcdc(view, low, average, high, fat=False):
        yield view[c.offset : c.offset + c.length]


def cut_stream(
    stream: io.RawIOBase | io.BufferedIOBase | BinaryIO,
    *,
    small: bool = False,
    window: int = 16 * 1024 * 1024,
) -> Iterator[bytes]:
    """``cut`` for a stream too big to hold (the index snapshot's plaintext is 2 GB at a
    million chunks): the same FastCDC chunks as ``cut`` of the whole, holding about ``window``
    bytes at a time.

    Why the chunks are the same: FastCDC decides where a chunk ends from its own bytes only,
    at most ``max`` of them. Chunking a window that starts at a chunk boundary finds the same
    chunks, except the window's last one, which may have been cut short by the window's end:
    that one is read again at the start of the next window. Chunks are copies (the window's
    buffer is reused)."""
    low, average, high = SMALL_CDC if small else LARGE_CDC
    window = max(window, 2 * high)
    buffer = bytearray()
    ended = False
    while not ended:
        piece = stream.read(window - len(buffer)) or b""  # a raw stream may say None
        ended = not piece
        buffer += piece
        if not buffer:
            return
        with memoryview(buffer) as view:
            chunks = list(fastcdc(view, low, average, high, fat=False))
            if not ended:
                chunks.pop()  # perhaps cut short by the window's end
            for c in chunks:
                yield bytes(view[c.offset : c.offset + c.length])
            done = chunks[-1].offset + chunks[-1].length if chunks else 0
        del buffer[:done]


@contextlib.contextmanager
def mapped(path: Path) -> Iterator[tuple[bytes | mmap.mmap, os.stat_result]]:
    """A file's bytes, mapped rather than read (a model can be gigabytes), and its stat."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size == 0:  # mmap refuses an empty file
            yield b"", st
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data, st


def check_relative_path(path: object) -> str:
    """A manifest's file path, refused unless it is a plain relative path inside the home."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS or "\x00" in path:
        raise BackupError(f"a snapshot names an unusable file path {str(path)[:80]!r}")
    parts = PurePosixPath(path).parts
    if (
        path.startswith("/")
        or "\\" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or not parts
    ):
        raise BackupError(f"a snapshot names a file outside the home ({path[:80]!r}); refused")
    return path


def check_object_id(object_id: object) -> str:
    if not isinstance(object_id, str) or not OBJECT_ID.fullmatch(object_id):
        raise BackupError(f"a snapshot names an object by an invalid id {str(object_id)[:80]!r}")
    return object_id


@dataclass
class FileEntry:
    """One file of a snapshot: its path in the home, size, mode and chunks, in order."""

    path: str
    size: int
    mode: int
    chunks: list[str]  # read from the list objects; only ``lists`` is in the manifest itself
    # "file": the bytes as they were; "index": the unsealed index snapshot, sealed again on restore
    kind: str = "file"
    lists: list[str] = field(default_factory=list)  # objects holding ``chunks``, 1024 ids each


@dataclass
class Manifest:
    id: str
    time: str
    owner_did: str
    node_did: str
    files: list[FileEntry]
    models: list[dict[str, Any]] = field(default_factory=list)
    skills: list[str] = field(default_factory=list)
    bytes_written: int = 0

    def to_json(self) -> bytes:
        document = {
            "format": MANIFEST_FORMAT,
            "version": VERSION,
            "id": self.id,
            "time": self.time,
            "owner_did": self.owner_did,
            "node_did": self.node_did,
            "files": [
                {"path": f.path, "size": f.size, "mode": f.mode, "kind": f.kind, "lists": f.lists}
                for f in self.files
            ],
            "models": self.models,
            "skills": self.skills,
            "bytes_written": self.bytes_written,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, snapshot_id: str, raw: bytes) -> Manifest:
        """Parse and check a manifest's shape: every path and id it names is validated here."""
        try:
            d = json.loads(raw)
            if d.get("format") != MANIFEST_FORMAT or d.get("version") != VERSION:
                raise BackupError(
                    f"snapshot {snapshot_id} is not a flurry snapshot of version {VERSION}"
                )
            if d["id"] != snapshot_id:
                raise BackupError(f"snapshot {snapshot_id} calls itself {d['id']!r}")
            if not isinstance(d["files"], list) or len(d["files"]) > MAX_FILES:
                raise BackupError(f"snapshot {snapshot_id} lists too many files")
            files = []
            for f in d["files"]:
                size, mode, lists = f["size"], f["mode"], f["lists"]
                if type(size) is not int or size < 0 or type(mode) is not int:
                    raise BackupError(f"snapshot {snapshot_id} gives a file a bad size or mode")
                if not isinstance(lists, list) or f.get("kind", "file") not in ("file", "index"):
                    raise BackupError(f"snapshot {snapshot_id} has a malformed file entry")
                files.append(
                    FileEntry(
                        check_relative_path(f["path"]),
                        size,
                        mode & 0o777,
                        [],
                        f.get("kind", "file"),
                        [check_object_id(c) for c in lists],
                    )
                )
            return cls(
                snapshot_id,
                str(d["time"]),
                str(d["owner_did"]),
                str(d["node_did"]),
                files,
                [m for m in d.get("models", []) if isinstance(m, dict) and "name" in m],
                [str(s) for s in d.get("skills", [])],
                int(d.get("bytes_written", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BackupError(f"snapshot {snapshot_id} is malformed ({e})") from None


@dataclass
class VerifyReport:
    snapshots: int = 0
    objects: int = 0
    bytes: int = 0
    damaged: dict[str, str] = field(default_factory=dict)  # object id → why
    bad_snapshots: dict[str, str] = field(default_factory=dict)  # snapshot or index file → why
    # (snapshot, file path, object id, what is wrong): the files a damaged or missing object breaks
    broken_files: list[tuple[str, str, str, str]] = field(default_factory=list)
    unused: int = 0  # objects in named packs that no snapshot uses (a killed backup's)
    orphans: list[str] = field(default_factory=list)  # packs no index names: a killed backup's
    leftovers: list[str] = field(default_factory=list)  # tmp/ files, unknown names

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.bad_snapshots or self.broken_files)


class Repository:
    """An opened repository folder. Build with ``create`` or ``open``; keys from ``backup_keys``."""

    def __init__(self, root: Path, sealer: Sealer) -> None:
        self.root = root
        self._sealer = sealer
        self._lock_fd: int | None = None
        self._index: dict[str, tuple[str, int, int]] = {}  # object id → (pack, offset, length)
        self._pack: int | None = None  # the file descriptor of the pack being written, in tmp/
        self._direct = False  # whether it was opened with O_DIRECT
        self._pack_id = ""
        self._pack_size = 0  # its bytes, those still in the buffer included
        # Sealed objects not written yet: buffer i is free once writes[i] (its last write) is done.
        self._buffers = [
            memoryview(mmap.mmap(-1, WRITE_BYTES + MAX_OBJECT_BYTES)) for _ in range(_WRITE_BUFFERS)
        ]
        self._writes: list[Future[None] | None] = [None] * _WRITE_BUFFERS
        self._current = 0  # the buffer being filled
        self._buffered = 0
        self._writer: ThreadPoolExecutor | None = None  # one thread: writes stay in order
        self._pending: list[tuple[str, int, int]] = []  # its objects: (id, offset, length)
        self._written: list[tuple[str, str, int, int]] = []  # closed packs' objects, this backup
        self._reading: BinaryIO | None = None
        self._stored: set[str] = set()  # objects this backup wrote
        # Object ids: keyed BLAKE3 under a key of their own, an HMAC output of the sealer's key.
        self._id_key = sealer.mac(b"", "backup object ids v2")

    # --- opening -------------------------------------------------------------------------

    @staticmethod
    def is_repository(root: Path) -> bool:
        return (root / "flurry-backup.json").is_file()

    @classmethod
    def create(cls, root: Path, sealer: Sealer) -> Repository:
        """Make a new repository in ``root``, which must not exist or be an empty folder."""
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise BackupError(
                f"{root} is not empty and holds no flurry backups; choose an empty or new folder"
            )
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("packs", "index", "snapshots", "tmp"):
            (root / sub).mkdir(exist_ok=True, mode=0o700)
        repo = cls(root, sealer)
        check = sealer.seal(_CHECK_PLAINTEXT, _CHECK_AAD)
        document = {"format": FORMAT, "version": VERSION, "check": check.hex()}
        repo.write_file_atomically(root / "flurry-backup.json", json.dumps(document).encode())
        return repo

    @classmethod
    def open(cls, root: Path, sealer: Sealer) -> Repository:
        """Open an existing repository; a clear error when its key is not this node's."""
        raw = read_limited(root / "flurry-backup.json", MAX_SMALL_FILE_BYTES)
        try:
            document = json.loads(raw)
            if document.get("format") != FORMAT:
                raise BackupError(f"{root} is not a flurry backup repository")
            if document.get("version") != VERSION:
                raise BackupError(
                    f"{root} is a flurry backup of version {document.get('version')!r}; this "
                    f"flurry reads and writes version {VERSION} (object ids changed): back up "
                    "into a new folder, and restore from this one with the flurry that wrote it"
                )
            check = bytes.fromhex(document["check"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackupError(f"{root}/flurry-backup.json is damaged") from None
        try:
            if sealer.unseal(check, _CHECK_AAD) != _CHECK_PLAINTEXT:
                raise SealError("unexpected check value")
        except SealError:
            raise BackupError(
                f"{root} holds another node's backups (its key is not this node's); "
                "choose another folder"
            ) from None
        repo = cls(root, sealer)
        repo.load_index()
        return repo

    # --- locking -------------------------------------------------------------------------

    def lock(self) -> None:
        """Held by a backup or a prune: two at once would sweep each other's objects."""
        fd = try_lock(self.root / "lock")
        if fd is None:
            raise BackupError(
                f"another flurry backup or prune is writing to {self.root}; wait for it to finish"
            )
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- objects, in packs -----------------------------------------------------------------

    def object_id(self, chunk: bytes | memoryview) -> str:
        return blake3.blake3(chunk, key=self._id_key).hexdigest()

    def load_index(self, problems: dict[str, str] | None = None) -> None:
        """Read every index file: which pack holds each object, where. A damaged index file is
        an error, or, given ``problems``, noted there (verify goes on with the others)."""
        self._index = {}
        for entry in _scandir(self.root / "index"):
            if not SNAPSHOT_ID.fullmatch(entry.name):
                continue
            try:
                self._index.update(self._read_index(entry.name))
            except BackupError as e:
                if problems is None:
                    raise
                problems[f"index/{entry.name}"] = str(e)

    def _read_index(self, name: str) -> dict[str, tuple[str, int, int]]:
        raw = read_limited(self.root / "index" / name, MAX_MANIFEST_BYTES)
        try:
            plain = self._sealer.unseal(raw, index_aad(name))
        except SealError:
            raise BackupError(f"index file {name} is damaged (it does not open)") from None
        if not plain.startswith(_INDEX_MAGIC) or (len(plain) - len(_INDEX_MAGIC)) % _ENTRY.size:
            raise BackupError(f"index file {name} is malformed")
        found = {}
        for pack, blob, offset, length in _ENTRY.iter_unpack(plain[len(_INDEX_MAGIC) :]):
            if length > MAX_OBJECT_BYTES:
                raise BackupError(f"index file {name} names an object larger than a backup writes")
            found[blob.hex()] = (pack.hex(), offset, length)
        return found

    def object_ids(self) -> set[str]:
        """The ids of every object some index file places in a pack."""
        return set(self._index)

    def object_location(self, object_id: str) -> tuple[Path, int, int] | None:
        """(pack file, offset, length) of an object, or None when no index places it."""
        found = self._index.get(check_object_id(object_id))
        if found is None:
            return None
        pack, offset, length = found
        return self.pack_path(pack), offset, length

    def pack_path(self, pack: str) -> Path:
        if not PACK_ID.fullmatch(pack):
            raise BackupError(f"{pack[:80]!r} is not a pack id")
        return self.root / "packs" / pack[:2] / pack

    def store(self, chunk: bytes | memoryview) -> tuple[str, int]:
        """A chunk's id, and the bytes written to store it: 0 when the repository has it."""
        object_id = self.object_id(chunk)
        if object_id in self._index or object_id in self._stored:
            return object_id, 0
        self._stored.add(object_id)
        return object_id, self.put_object(object_id, chunk)

    def read_list(self, lists: list[str]) -> list[str]:
        """The chunk ids held by list objects (each checked like any object)."""
        ids = []
        for list_id in lists:
            raw = self.get_object(list_id)
            if len(raw) % _ID_BYTES:
                raise BackupError(f"object {list_id} is not a list of object ids")
            ids += [raw[i : i + _ID_BYTES].hex() for i in range(0, len(raw), _ID_BYTES)]
        return ids

    def put_object(self, object_id: str, chunk: bytes | memoryview) -> int:
        """Seal a chunk into the pack being written; returns the bytes written."""
        if len(chunk) + SEAL_OVERHEAD > MAX_OBJECT_BYTES:
            raise BackupError(f"a chunk of {len(chunk)} bytes is larger than a backup writes")
        if self._pack is None:
            self._pack_id = secrets.token_hex(16)
            self._pack, self._direct = _open_for_writing(
                self.root / "tmp" / f"pack-{self._pack_id}.tmp"
            )
            self._pack_size = 0
        # Sealed straight into the buffer: no sealed copy of each chunk, one write a megabyte.
        buffer = self._buffers[self._current]
        length = self._sealer.seal_into(chunk, object_aad(object_id), buffer[self._buffered :])
        self._pending.append((object_id, self._pack_size, length))
        self._buffered += length
        self._pack_size += length
        if self._buffered >= WRITE_BYTES:
            self._flush_buffer()
        if self._pack_size >= PACK_BYTES:
            self._close_pack()
        return length

    def _flush_buffer(self) -> None:
        """Hand the filled buffer to the writer thread and wait, if need be, for the next one.
        Writing direct, the last part of a block stays behind, moved to the next buffer."""
        if self._pack is None or not self._buffered:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="flurry-backup-write")
        filled = self._buffers[self._current]
        whole = self._buffered - self._buffered % _BLOCK if self._direct else self._buffered
        if whole:
            self._writes[self._current] = self._writer.submit(
                _write_all, self._pack, filled[:whole]
            )
        self._current = (self._current + 1) % _WRITE_BUFFERS
        self._wait_write(self._current)
        rest = self._buffered - whole
        self._buffers[self._current][:rest] = filled[whole : self._buffered]
        self._buffered = rest

    def _wait_write(self, i: int) -> None:
        pending, self._writes[i] = self._writes[i], None
        if pending is not None:
            pending.result()  # a write's error (a full disk) is raised here

    def _close_pack(self) -> None:
        if self._pack is None:
            return
        self._flush_buffer()
        for i in range(_WRITE_BUFFERS):
            self._wait_write(i)
        if self._buffered:  # the pack's last, partial block
            if self._direct:
                flags = fcntl.fcntl(self._pack, fcntl.F_GETFL)
                fcntl.fcntl(self._pack, fcntl.F_SETFL, flags & ~_O_DIRECT)
            _write_all(self._pack, self._buffers[self._current][: self._buffered])
            self._buffered = 0
        os.close(self._pack)
        self._pack = None
        target = self.pack_path(self._pack_id)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(self.root / "tmp" / f"pack-{self._pack_id}.tmp", target)
        for object_id, offset, length in self._pending:
            self._written.append((self._pack_id, object_id, offset, length))
        self._pending = []

    def finish_objects(self, snapshot_id: str) -> None:
        """The packs this backup wrote made durable, then their index file written: after this
        the objects are found by later backups and by restore."""
        self._close_pack()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        if not self._written:
            return
        sync_all(self.root)  # one syncfs for every pack, rather than an fsync per pack
        body = b"".join(
            _ENTRY.pack(bytes.fromhex(pack), bytes.fromhex(blob), offset, length)
            for pack, blob, offset, length in self._written
        )
        sealed = self._sealer.seal(_INDEX_MAGIC + body, index_aad(snapshot_id))
        self.write_file_atomically(self.root / "index" / snapshot_id, sealed)
        for pack, blob, offset, length in self._written:
            self._index[blob] = (pack, offset, length)
        self._written = []

    def get_object(self, object_id: str) -> bytes:
        """A chunk, checked: it opens under its id and its HMAC is its id."""
        found = self.object_location(object_id)
        if found is None:
            raise BackupError(f"object {object_id} is missing (no index places it)")
        path, offset, length = found
        try:
            if self._reading is None or self._reading.name != str(path):
                self.close()
                self._reading = open(path, "rb")  # noqa: SIM115 (kept open: reads come in order)
            self._reading.seek(offset)
            raw = self._reading.read(length)
        except FileNotFoundError:
            raise BackupError(
                f"object {object_id} is missing (its pack {path.name} is gone)"
            ) from None
        if len(raw) != length:
            raise BackupError(f"object {object_id} is damaged (its pack {path.name} is cut short)")
        return self._open_object(object_id, raw)

    def _open_object(self, object_id: str, raw: bytes) -> bytes:
        try:
            chunk = self._sealer.unseal(raw, object_aad(object_id))
        except SealError:
            raise BackupError(f"object {object_id} is damaged (it does not open)") from None
        if self.object_id(chunk) != object_id:
            raise BackupError(f"object {object_id} is damaged (its content is not its id)")
        return chunk

    def close(self) -> None:
        if self._reading is not None:
            self._reading.close()
            self._reading = None

    # --- snapshots -----------------------------------------------------------------------

    def snapshot_ids(self) -> list[str]:
        """Oldest first; names that are not snapshot ids (a crash's temp file) are left out."""
        return sorted(
            e.name for e in _scandir(self.root / "snapshots") if SNAPSHOT_ID.fullmatch(e.name)
        )

    def write_manifest(self, manifest: Manifest) -> None:
        """The last step of a backup: once this rename is done, the snapshot exists."""
        sealed = self._sealer.seal(manifest.to_json(), snapshot_aad(manifest.id))
        self.write_file_atomically(self.root / "snapshots" / manifest.id, sealed)

    def read_manifest(self, snapshot_id: str) -> Manifest:
        if not SNAPSHOT_ID.fullmatch(snapshot_id):
            raise BackupError(
                f"{snapshot_id!r} is not a snapshot id (flurry backup list shows them)"
            )
        path = self.root / "snapshots" / snapshot_id
        try:
            raw = read_limited(path, MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise BackupError(f"no snapshot {snapshot_id} in {self.root}") from None
        try:
            plain = self._sealer.unseal(raw, snapshot_aad(snapshot_id))
        except SealError:
            raise BackupError(f"snapshot {snapshot_id} is damaged (it does not open)") from None
        manifest = Manifest.from_json(snapshot_id, plain)
        for entry in manifest.files:
            try:
                entry.chunks = self.read_list(entry.lists)
            except BackupError as e:
                raise BackupError(f"snapshot {snapshot_id}: {entry.path}: {e}") from None
        return manifest

    # --- checking and cleaning -----------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Every object opens and hashes to its id; every snapshot opens and its objects are there."""
        report = VerifyReport()
        self.load_index(report.bad_snapshots)
        users: dict[str, list[tuple[str, str]]] = {}
        for sid in self.snapshot_ids():
            report.snapshots += 1
            try:
                manifest = self.read_manifest(sid)
            except BackupError as e:
                report.bad_snapshots[sid] = str(e)
                continue
            for entry in manifest.files:
                for object_id in entry.lists + entry.chunks:
                    users.setdefault(object_id, []).append((sid, entry.path))
        # Pack by pack, in order: each pack is read once, front to back.
        for object_id in sorted(self._index, key=lambda o: (self._index[o][0], self._index[o][1])):
            try:
                report.bytes += len(self.get_object(object_id))
                report.objects += 1
            except BackupError as e:
                report.damaged[object_id] = str(e)
        self.close()
        for object_id, used_by in sorted(users.items()):
            problem = report.damaged.get(object_id) or (
                f"object {object_id} is missing (no index places it)"
                if object_id not in self._index
                else None
            )
            if problem:
                for sid, path in sorted(set(used_by)):
                    report.broken_files.append((sid, path, object_id, problem))
        report.unused = len(set(self._index) - set(users))
        report.orphans = sorted(self._orphan_packs())
        report.leftovers = self._leftovers()
        return report

    def _orphan_packs(self) -> set[str]:
        """Packs no index file names: a killed backup's, never read by anything."""
        named = {pack for pack, _, _ in self._index.values()}
        present = {
            entry.name
            for sub in _scandir(self.root / "packs")
            for entry in _scandir(Path(sub.path))
            if PACK_ID.fullmatch(entry.name)
        }
        return present - named

    def _leftovers(self) -> list[str]:
        found = [f"tmp/{e.name}" for e in _scandir(self.root / "tmp")]
        for folder in ("snapshots", "index"):
            found += [
                f"{folder}/{e.name}"
                for e in _scandir(self.root / folder)
                if not SNAPSHOT_ID.fullmatch(e.name)
            ]
        return sorted(found)

    def prune(self) -> tuple[int, int]:
        """Remove the packs a killed backup left (no index names them) and temp files; returns
        (packs, temp files). Objects no snapshot uses inside named packs stay. Call with the
        lock held."""
        self.load_index()
        orphans = self._orphan_packs()
        for pack in orphans:
            self.pack_path(pack).unlink()
        leftovers = self._leftovers()
        for name in leftovers:
            (self.root / name).unlink()
        return len(orphans), len(leftovers)

    # --- files ---------------------------------------------------------------------------

    def write_file_atomically(self, path: Path, data: bytes) -> None:
        tmp = self.root / "tmp" / f".{path.name}.{secrets.token_hex(4)}.tmp"
        tmp.parent.mkdir(exist_ok=True, mode=0o700)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)


def _open_for_writing(path: Path) -> tuple[int, bool]:
    """A new file, opened with O_DIRECT when the file system takes it: (descriptor, direct)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if _O_DIRECT:
        try:
            return os.open(path, flags | _O_DIRECT, 0o600), True
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: no direct I/O here (tmpfs before Linux 6.6)
                raise
    return os.open(path, flags, 0o600), False


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def read_limited(path: Path, limit: int) -> bytes:
    """A file's bytes, refused when it is larger than ``limit`` (checked before reading)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise BackupError(f"{path} is {size} bytes, more than a flurry backup writes ({limit})")
        # What fstat said and a byte more: read(limit + 1) would allocate the whole limit (256
        # MiB for a manifest) for a file of a few kilobytes.
        data = f.read(size + 1)
        if len(data) > size:  # it grew while read: the rest, up to the limit
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:
        raise BackupError(f"{path} grew past {limit} bytes while read")
    return data


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_all(folder: Path) -> None:
    """Make everything written under ``folder`` durable before the manifest names it.

    One syncfs(2) for the whole file system rather than an fsync per object: thousands of
    fsyncs would cost more than the backup itself. Where syncfs is missing, sync(2)."""
    libc_name = ctypes.util.find_library("c")
    syncfs = getattr(ctypes.CDLL(libc_name), "syncfs", None) if libc_name else None
    if syncfs is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    # Absent, or a file where a folder should be (a stranger's repository): nothing in it.
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as entries:
        return list(entries)
    return []
