"""A backup repository: a folder of sealed, content-addressed objects and sealed snapshots.

Like restic's, but for one node. Layout of the folder:

    flurry-backup.json    format, version, and a value sealed under the repository's key: a
                          node whose data key differs cannot open it (another node's backups)
    keyring.json          the node's keyring as last backed up (sealed under the passphrase):
                          on a new box the folder and the passphrase are all a restore needs
    objects/ab/ab12…      one object per distinct chunk, named by its 64-hex id
    snapshots/<id>        one sealed manifest per finished backup: files → chunk ids
    tmp/                  objects and manifests being written (left over only by a crash)
    lock                  held by a backup or a prune, so a prune never sweeps a running
                          backup's objects

Keys: HKDF from the node's data key (``backup_keys``) gives a root, and ``store.sealing.Sealer``
derives from it an AES-256-GCM key and an HMAC key, so the repository never shares a key with
the vault. An object's id is the HMAC of its plaintext, not a plain hash: a plain hash would let
anyone holding the folder test whether a known file is in it. Every object and manifest is
sealed with its id as associated data, so one cannot be passed off as another.

Crash safety: an object or manifest is written to tmp/ and renamed into place; a backup writes
all its objects, syncs the file system, and only then renames its manifest in. A backup killed
at any moment leaves every finished snapshot whole; what it wrote before dying is orphan objects
(``verify`` reports them, ``prune`` removes them).

What a stranger's folder can do: nothing is read before its size is checked; an object is looked
up only by a validated hex id, never by a name a manifest gives; a manifest's file paths are
checked before anything is restored (``check_relative_path``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastcdc import fastcdc

from node.errors import NodeError
from store.sealing import Sealer, SealError

FORMAT = "flurry-backup"
VERSION = 1
MANIFEST_FORMAT = "flurry-backup-snapshot"

# Content-defined chunking (FastCDC): an insertion moves the cut points only near it, and a
# page changed in place in SQLite changes only the chunk around it (bench_backup measures).
MIN_CHUNK = 16 * 1024
AVG_CHUNK = 64 * 1024
MAX_CHUNK = 256 * 1024
_WINDOW = 8 * 1024 * 1024  # how much of a file is cut at a time: big files are never read whole

# Limits checked before reading anything from a repository, which may be a stranger's.
_SEAL_OVERHEAD = 1 + 12 + 16  # Sealer's version byte, nonce and tag
MAX_OBJECT_BYTES = MAX_CHUNK + _SEAL_OVERHEAD
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
MAX_SMALL_FILE_BYTES = 1024 * 1024  # flurry-backup.json, keyring.json
MAX_FILES = 1_000_000
MAX_PATH_CHARS = 4096

OBJECT_ID = re.compile(r"[0-9a-f]{64}")
SNAPSHOT_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")
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


def snapshot_aad(snapshot_id: str) -> str:
    return f"flurry-backup snapshot {snapshot_id}"


def new_snapshot_id() -> str:
    """Sorts by time: the newest snapshot is the last name."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def cut(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """The chunks of a stream, cut by FastCDC, reading at most a window at a time.

    Each window's last chunk may have been cut short by the window's end, so it is carried into
    the next window; every other cut point depends only on bytes before it, so the chunks are
    the ones cutting the whole stream at once would give."""
    pending = b""
    while True:
        more = read(_WINDOW)
        data = pending + more
        if not data:
            return
        view = memoryview(data)
        cuts = list(fastcdc(view, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, fat=False))
        last = cuts if not more else cuts[:-1]
        for c in last:
            yield bytes(view[c.offset : c.offset + c.length])
        if not more:
            return
        pending = bytes(view[cuts[-1].offset :])


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
    chunks: list[str]
    # "file": the bytes as they were; "index": the unsealed index snapshot, sealed again on restore
    kind: str = "file"


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
            "files": [vars(f) for f in self.files],
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
                size, mode, chunks = f["size"], f["mode"], f["chunks"]
                if type(size) is not int or size < 0 or type(mode) is not int:
                    raise BackupError(f"snapshot {snapshot_id} gives a file a bad size or mode")
                if not isinstance(chunks, list) or f.get("kind", "file") not in ("file", "index"):
                    raise BackupError(f"snapshot {snapshot_id} has a malformed file entry")
                files.append(
                    FileEntry(
                        check_relative_path(f["path"]),
                        size,
                        mode & 0o777,
                        [check_object_id(c) for c in chunks],
                        f.get("kind", "file"),
                    )
                )
            return cls(
                snapshot_id,
                str(d["time"]),
                str(d["owner_did"]),
                str(d["node_did"]),
                files,
                list(d.get("models", [])),
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
    bad_snapshots: dict[str, str] = field(default_factory=dict)  # snapshot id → why
    # (snapshot, file path, object id, what is wrong): the files a damaged or missing object breaks
    broken_files: list[tuple[str, str, str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
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
        for sub in ("objects", "snapshots", "tmp"):
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
                    f"{root} is a flurry backup of version {document.get('version')!r}; "
                    f"this flurry reads version {VERSION}"
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
        return cls(root, sealer)

    # --- locking -------------------------------------------------------------------------

    def lock(self) -> None:
        """Held by a backup or a prune: two at once would sweep each other's objects."""
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BackupError(
                f"another flurry backup or prune is writing to {self.root}; wait for it to finish"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- objects -------------------------------------------------------------------------

    def object_id(self, chunk: bytes) -> str:
        return self._sealer.mac(chunk, "backup-object").hex()

    def object_path(self, object_id: str) -> Path:
        check_object_id(object_id)  # the only way a name from a manifest becomes a path
        return self.root / "objects" / object_id[:2] / object_id

    def object_ids(self) -> set[str]:
        """The ids of every object present (names that are not ids are ignored here)."""
        found: set[str] = set()
        objects = self.root / "objects"
        for sub in _scandir(objects):
            if sub.is_dir(follow_symlinks=False) and re.fullmatch(r"[0-9a-f]{2}", sub.name):
                for entry in _scandir(Path(sub.path)):
                    if OBJECT_ID.fullmatch(entry.name) and entry.name.startswith(sub.name):
                        found.add(entry.name)
        return found

    def put_object(self, object_id: str, chunk: bytes) -> int:
        """Seal and store a chunk under its id; returns the bytes written."""
        sealed = self._sealer.seal(chunk, object_aad(object_id))
        target = self.object_path(object_id)
        target.parent.mkdir(exist_ok=True, mode=0o700)
        tmp = self.root / "tmp" / f"{object_id}.{secrets.token_hex(4)}.tmp"
        with open(tmp, "wb") as f:
            f.write(sealed)
        os.replace(tmp, target)  # durability comes from sync_all before the manifest
        return len(sealed)

    def get_object(self, object_id: str) -> bytes:
        """A chunk, checked: it opens under its id and its HMAC is its id."""
        path = self.object_path(object_id)
        try:
            raw = read_limited(path, MAX_OBJECT_BYTES)
        except FileNotFoundError:
            raise BackupError(f"object {object_id} is missing") from None
        try:
            chunk = self._sealer.unseal(raw, object_aad(object_id))
        except SealError:
            raise BackupError(f"object {object_id} is damaged (it does not open)") from None
        if self.object_id(chunk) != object_id:
            raise BackupError(f"object {object_id} is damaged (its content is not its id)")
        return chunk

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
        return Manifest.from_json(snapshot_id, plain)

    # --- checking and cleaning -----------------------------------------------------------

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Every object opens and hashes to its id; every snapshot opens and its objects are there."""
        report = VerifyReport()
        present = self.object_ids()
        users: dict[str, list[tuple[str, str]]] = {}
        for sid in self.snapshot_ids():
            report.snapshots += 1
            try:
                manifest = self.read_manifest(sid)
            except BackupError as e:
                report.bad_snapshots[sid] = str(e)
                continue
            for entry in manifest.files:
                for object_id in entry.chunks:
                    users.setdefault(object_id, []).append((sid, entry.path))
        for n, object_id in enumerate(sorted(present)):
            try:
                report.bytes += len(self.get_object(object_id))
                report.objects += 1
            except BackupError as e:
                report.damaged[object_id] = str(e)
            if progress:
                progress(n + 1, len(present))
        for object_id, used_by in sorted(users.items()):
            problem = report.damaged.get(object_id) or (
                f"object {object_id} is missing" if object_id not in present else None
            )
            if problem:
                for sid, path in sorted(set(used_by)):
                    report.broken_files.append((sid, path, object_id, problem))
        report.orphans = sorted(present - set(users))
        report.leftovers = sorted(
            str(Path(e.path).relative_to(self.root)) for e in _scandir(self.root / "tmp")
        ) + sorted(
            f"snapshots/{e.name}"
            for e in _scandir(self.root / "snapshots")
            if not SNAPSHOT_ID.fullmatch(e.name)
        )
        return report

    def prune(self) -> tuple[int, int]:
        """Remove orphan objects and a crashed backup's temp files; returns (objects, temp files).
        Call with the lock held."""
        used: set[str] = set()
        for sid in self.snapshot_ids():
            used.update(c for f in self.read_manifest(sid).files for c in f.chunks)
        orphans = self.object_ids() - used
        for object_id in orphans:
            self.object_path(object_id).unlink()
        leftovers = [Path(e.path) for e in _scandir(self.root / "tmp")] + [
            Path(e.path)
            for e in _scandir(self.root / "snapshots")
            if not SNAPSHOT_ID.fullmatch(e.name)
        ]
        for path in leftovers:
            path.unlink()
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


def read_limited(path: Path, limit: int) -> bytes:
    """A file's bytes, refused when it is larger than ``limit`` (checked before reading)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise BackupError(f"{path} is {size} bytes, more than a flurry backup writes ({limit})")
        data = f.read(limit + 1)
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
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        return list(entries)
    return []
