"""Backing a node's home up into a repository (``node.backup_repository``), and restoring it.

What a snapshot holds, read while the node may be running (it holds the home's lock; a backup
only reads, and never needs the lock):

- the vault, through SQLite's online backup API into a scratch copy: a consistent database
  even while `flurry serve` writes, never the live file and its -wal copied by hand;
- the index snapshot, unsealed and kept as plaintext inside the repository's own sealing. The
  home's ``index.sealed`` is sealed whole with a fresh nonce at every save, so every byte of it
  changes each time and no chunk would ever be shared with the last backup; its plaintext (a tar
  of chromadb's files and the lexical index's arrays) changes little when a few documents are added, so
  content-defined chunks carry most of it over (bench_backup: 19.5 MB of its 290 MB new after
  100 documents added to 100k chunks, where the sealed file would be 290 MB every time).
  Leaving it out would make a restore re-add every vector from the vault, minutes at 100k
  chunks. Restore seals it again under the data key;
- the keyring and config.json, each read once (they are replaced by rename, so one read gives
  one whole version);
- every other file of the home: the skills' code folders (a skill installed from a local wheel
  or folder cannot be fetched again, and content-addressed chunks cost nothing once stored; the
  skills' records, grants and approvals are in the vault), and whatever else the node keeps
  there. Left out: the lock, serve.json, last_backup.json, SQLite's -wal/-shm/-journal, a set
  aside ``index.broken``, temp files (".…" or "….tmp"), and the models folder;
- the models in use by reference (name, file, size, sha256); ``with_models`` copies them too.

Restore writes into a temp folder beside the new home and renames it into place at the end: a
crash leaves no home at all (and a temp folder, swept by the next restore), never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.models import CATALOG, HUB_CATALOG, sha256_file
from identity.keyring import Keyring, UnlockedKeyring, WrongPassphrase
from node.backup_repository import (
    LIST_IDS,
    MAX_SMALL_FILE_BYTES,
    BackupError,
    FileEntry,
    Manifest,
    Repository,
    backup_keys,
    cut,
    cut_stream,
    fsync_dir,
    mapped,
    new_snapshot_id,
    read_limited,
    sync_all,
)
from node.home import Home, private_files, runtime_dir
from store.retrieval import open_snapshot_plaintext, write_snapshot_plaintext
from store.sealing import Sealer, SealError

Say = Callable[[str], None]

# Names at the top of the home that a snapshot leaves out (the module docstring says why).
_SKIPPED = {
    "lock",
    "serve.json",
    "last_backup.json",
    "vault.sqlite3-wal",
    "vault.sqlite3-shm",
    "vault.sqlite3-journal",
    "index.broken",
}
# Read specially (below), not as plain files.
_VAULT, _INDEX, _KEYRING = "vault.sqlite3", "index.sealed", "keyring.json"
_RESTORING = re.compile(r"\.(.+)\.restoring-(\d+)-.+")


@dataclass(frozen=True)
class BackupResult:
    snapshot: str
    files: int
    bytes_total: int  # the size of everything in the snapshot
    bytes_written: int  # what this backup added to the repository
    objects_written: int
    models: list[dict[str, Any]]


@dataclass(frozen=True)
class RestoreResult:
    snapshot: str
    home: Path
    files: int
    bytes: int
    owner_did: str
    node_did: str
    models: list[dict[str, Any]]


def back_up(
    home: Home,
    keys: UnlockedKeyring,
    dest: Path,
    *,
    with_models: bool = False,
    say: Say = print,
    after_object: Callable[[], None] | None = None,
) -> BackupResult:
    """Write a new snapshot of ``home`` into the repository at ``dest`` (made when new).

    ``after_object`` is called after each object written (the tests' crash points)."""
    home.require()
    private_files()  # the repository is the owner's alone, like the home
    dest = dest.expanduser().absolute()
    if _inside(dest, home.root):
        raise BackupError(f"{dest} is inside the home {home.root}; back up to another folder")
    sealer = backup_keys(keys.data_key)
    if Repository.is_repository(dest):
        repo = Repository.open(dest, sealer)
    else:
        repo = Repository.create(dest, sealer)
    repo.lock()
    try:
        previous = _latest_manifest(repo)
        written = objects_written = 0
        files: list[FileEntry] = []

        def keep(chunk: bytes | memoryview) -> str:
            nonlocal written, objects_written
            object_id, n = repo.store(chunk)
            if n:
                written += n
                objects_written += 1
                if after_object is not None:
                    after_object()
            return object_id

        def store(
            path: str, chunks: Iterable[bytes | memoryview], mode: int, kind: str = "file"
        ) -> None:
            ids, size = [], 0
            for chunk in chunks:
                size += len(chunk)
                ids.append(keep(chunk))
            raw = b"".join(bytes.fromhex(i) for i in ids)
            step = LIST_IDS * 32  # bytes of ids per list object
            lists = [keep(raw[start : start + step]) for start in range(0, len(raw), step)]
            files.append(FileEntry(path, size, mode, ids, kind, lists))

        keyring_bytes = read_limited(home.keyring, MAX_SMALL_FILE_BYTES)  # once: see docstring
        store(_KEYRING, cut(keyring_bytes), 0o600)
        with _vault_copy(home, repo) as copying:
            # SQLite copies the vault in its own thread (it lets go of the GIL) meanwhile.
            try:
                # Streamed: at a million chunks the plaintext is 2 GB, never held whole here.
                with open_snapshot_plaintext(home.index_snapshot, Sealer(keys.data_key)) as index:
                    store(_INDEX, cut_stream(index, small=True), 0o600, kind="index")
            except FileNotFoundError:
                pass  # no index yet
            except SealError as e:  # a restored node rebuilds its indexes from the vault
                say(
                    f"the index snapshot does not open ({e}); left out: a restore rebuilds it "
                    "from the vault"
                )
            with mapped(copying.result()) as (data, _):
                store(_VAULT, cut(data), 0o600)
        for path, relative in _home_files(home):
            # gone between listing and reading (a skill removed): not in this snapshot
            with contextlib.suppress(FileNotFoundError), mapped(path) as (data, st):
                store(relative, cut(data), st.st_mode & 0o700)
        models = _models(home, previous)
        for model in models:
            source = _model_path(model["name"], home.models)
            if with_models and source is not None:
                with mapped(source) as (data, _):
                    store(f"models/{model['file']}", cut(data), 0o600)
                model["copied"] = True
        # Every object durable and indexed before the manifest names it; the keyring copy
        # before the manifest too, so the repository's keyring is never older than its newest
        # snapshot.
        snapshot_id = new_snapshot_id()
        repo.finish_objects(snapshot_id)
        repo.write_file_atomically(dest / _KEYRING, keyring_bytes)
        manifest = Manifest(
            id=snapshot_id,
            time=_now(),
            owner_did=keys.owner_did,
            node_did=keys.node_did,
            files=files,
            models=models,
            skills=sorted(p.name for p in _scandir_dirs(home.skills)),
            bytes_written=written,
        )
        repo.write_manifest(manifest)
    finally:
        repo.unlock()
    result = BackupResult(
        manifest.id,
        len(files),
        sum(f.size for f in files),
        written,
        objects_written,
        models,
    )
    _write_last_backup(home, dest, result)
    return result


def restore(
    src: Path,
    target: Home,
    passphrase: str,
    *,
    snapshot_id: str | None = None,
    say: Say = print,
    after_file: Callable[[], None] | None = None,
) -> RestoreResult:
    """Restore a snapshot (the newest by default) into ``target``, which must not exist yet or
    be an empty folder. ``after_file`` is called after each file written (the tests' crash points)."""
    private_files()
    src = src.expanduser().absolute()
    if not Repository.is_repository(src):
        raise BackupError(f"{src} holds no flurry backups (no flurry-backup.json)")
    read_limited(src / _KEYRING, MAX_SMALL_FILE_BYTES)  # its size, before the keyring reads it
    keys = Keyring.unlock(src / _KEYRING, passphrase)  # a wrong passphrase stops here
    repo = Repository.open(src, backup_keys(keys.data_key))
    snapshots = repo.snapshot_ids()
    if snapshot_id is None:
        if not snapshots:
            raise BackupError(f"{src} holds no finished snapshot yet")
        snapshot_id = snapshots[-1]
    manifest = repo.read_manifest(snapshot_id)
    if not any(f.path == _KEYRING for f in manifest.files):
        raise BackupError(f"snapshot {snapshot_id} holds no keyring; it cannot be restored")

    root = target.root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BackupError(
            f"{root} already exists and is not empty; restore into a new home (set FLURRY_HOME "
            "or --home), or move it away first"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    _sweep_restoring(root.parent)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{root.name}.restoring-{os.getpid()}-", dir=root.parent)
    )
    try:
        total = 0
        for entry in manifest.files:
            path = staging / entry.path
            if not _inside(path, staging):  # paths were checked when read; checked again here
                raise BackupError(f"snapshot {snapshot_id} names a file outside the home")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            total += _restore_file(repo, entry, path, keys.data_key)
            if after_file is not None:
                after_file()
        _check_restored_keyring(staging / _KEYRING, src / _KEYRING, keys, passphrase, say)
        sync_all(staging)
        if root.exists():
            root.rmdir()  # empty, checked above
        os.rename(staging, root)
        fsync_dir(root.parent)
    except OSError as e:  # two entries at one path, a file where a folder must go, a full disk
        shutil.rmtree(staging, ignore_errors=True)
        raise BackupError(f"snapshot {snapshot_id} cannot be restored into {root}: {e}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        repo.close()
    return RestoreResult(
        snapshot_id,
        root,
        len(manifest.files),
        total,
        manifest.owner_did,
        manifest.node_did,
        manifest.models,
    )


def open_repository(src: Path, passphrase: str) -> Repository:
    """A repository opened with the passphrase of the keyring it holds (for list, verify, prune)."""
    src = src.expanduser().absolute()
    if not Repository.is_repository(src):
        raise BackupError(f"{src} holds no flurry backups (no flurry-backup.json)")
    read_limited(src / _KEYRING, MAX_SMALL_FILE_BYTES)
    keys = Keyring.unlock(src / _KEYRING, passphrase)
    return Repository.open(src, backup_keys(keys.data_key))


# --- reading the home --------------------------------------------------------------------


@contextlib.contextmanager
def _vault_copy(home: Home, repo: Repository) -> Iterator[Future[Path]]:
    """A consistent copy of the vault by SQLite's online backup, in a scratch folder.

    The copy holds only what the vault holds (sealed values, random ids, keyed tags). It goes to
    the memory-backed runtime folder when that has room (no second write to disk), else to the
    repository's tmp/. In the runtime folder its name carries this process's pid, so a node
    opening later sweeps it if this process dies (``store.vector_index.sweep_stale``)."""
    size = home.vault.stat().st_size
    wal = home.vault.with_name(home.vault.name + "-wal")
    size += wal.stat().st_size if wal.exists() else 0
    try:
        scratch_parent = runtime_dir()
        if shutil.disk_usage(scratch_parent).free < 2 * size + (64 << 20):
            scratch_parent = repo.root / "tmp"
    except OSError:
        scratch_parent = repo.root / "tmp"
    scratch = Path(tempfile.mkdtemp(prefix=f"flurry-{os.getpid()}-backup-", dir=scratch_parent))
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="flurry-vault-copy") as pool:
            yield pool.submit(_copy_vault, home.vault, scratch / _VAULT)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # after the pool's thread has ended


def _copy_vault(vault: Path, copy: Path) -> Path:
    source = sqlite3.connect(f"file:{vault}?mode=ro", uri=True)
    try:
        source.execute("PRAGMA busy_timeout=10000")
        target = sqlite3.connect(copy)
        try:
            # One step (pages=-1): the whole database under one read transaction, so the copy
            # is one consistent version even while the node commits beside it.
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    return copy


def _home_files(home: Home) -> Iterator[tuple[Path, str]]:
    """Every other regular file of the home, as (path, path relative to the home), sorted."""
    for folder, dirs, names in os.walk(home.root):
        here = Path(folder)
        top = here == home.root
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (top and d == "models"))
        for name in sorted(names):
            if top and name in _SKIPPED | {_VAULT, _INDEX, _KEYRING}:
                continue
            if name.startswith(".") or name.endswith(".tmp"):
                continue
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue  # pip --target makes none; a link could point anywhere
            yield path, path.relative_to(home.root).as_posix()


def _models(home: Home, previous: Manifest | None) -> list[dict[str, Any]]:
    """The models in use, by reference: their sha256 is taken from the last snapshot when the
    file is unchanged (hashing gigabytes at every backup would cost more than the backup)."""
    known = {
        (m.get("file"), m.get("size"), m.get("mtime_ns")): m.get("sha256")
        for m in (previous.models if previous else [])
    }
    config = home.load_config()
    found: list[dict[str, Any]] = []
    for role, name in (("chat", config.chat_model), ("embedding", config.embedding_model)):
        path = _model_path(name, home.models)
        if path is None:
            found.append({"role": role, "name": name, "sha256": None, "copied": False})
            continue
        st = path.stat()
        digest = known.get((path.name, st.st_size, st.st_mtime_ns)) or sha256_file(path)
        found.append(
            {
                "role": role,
                "name": name,
                "file": path.name,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": digest,
                "copied": False,
            }
        )
    return found


def _model_path(name: str, models_dir: Path) -> Path | None:
    """Where a configured model's file is, without fetching anything (resolve_model would)."""
    if name in CATALOG:
        candidate = models_dir / CATALOG[name].filename
    elif name in HUB_CATALOG:
        candidate = models_dir / HUB_CATALOG[name].filename
    elif Path(name).expanduser().is_file():
        candidate = Path(name).expanduser()
    else:
        candidate = models_dir / name
    # Copied by --with-models into models/<file>: a path's own folders are not kept.
    return candidate if candidate.is_file() else None


def _latest_manifest(repo: Repository) -> Manifest | None:
    ids = repo.snapshot_ids()
    if not ids:
        return None
    try:
        return repo.read_manifest(ids[-1])
    except BackupError:
        return None  # only a cache of model digests is read from it


def _scandir_dirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except FileNotFoundError:
        return []


def _write_last_backup(home: Home, dest: Path, result: BackupResult) -> None:
    """<home>/last_backup.json, for `flurry doctor`: when, where, which snapshot, how much."""
    record = {
        "finished": _now(),
        "dest": str(dest),
        "snapshot": result.snapshot,
        "bytes_written": result.bytes_written,
    }
    path = home.root / "last_backup.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


# --- writing the restored home ------------------------------------------------------------


def _restore_file(repo: Repository, entry: FileEntry, path: Path, data_key: bytes) -> int:
    """Write one file of a snapshot; each object is checked against its id as it is read."""
    if entry.kind == "index":
        # Sealed again (fresh nonces) as it is read: checked piece by piece, and a failure
        # leaves no file.
        write_snapshot_plaintext(path, Sealer(data_key), _checked_pieces(repo, entry))
        return entry.size
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, (entry.mode & 0o700) | 0o600)
    with os.fdopen(fd, "wb") as f:
        for chunk in _checked_pieces(repo, entry):
            f.write(chunk)
    return entry.size


def _checked_pieces(repo: Repository, entry: FileEntry) -> Iterator[bytes]:
    """The objects of ``entry``, each checked against its id as it is read; raises when they
    do not add up to the size the snapshot says."""
    size = 0
    for object_id in entry.chunks:
        chunk = repo.get_object(object_id)
        size += len(chunk)
        if size > entry.size:
            break
        yield chunk
    if size != entry.size:
        raise BackupError(
            f"{entry.path} does not add up to the {entry.size} bytes the snapshot says"
        )


def _check_restored_keyring(
    restored: Path, newest: Path, keys: UnlockedKeyring, passphrase: str, say: Say
) -> None:
    """The restored keyring must open with the passphrase given and hold the same data key.

    A snapshot taken before a passphrase change holds the keyring sealed under the old one; the
    repository's keyring (the newest) holds the same keys under the new one when its DIDs are
    the same, and is restored in its place."""
    try:
        opened = Keyring.unlock(restored, passphrase)
    except WrongPassphrase:
        then, now = Keyring.read_public(restored), Keyring.read_public(newest)
        if (then["owner_did"], then["node_did"]) != (now["owner_did"], now["node_did"]):
            raise BackupError(
                "this snapshot's keyring opens only with the passphrase the node had when it was "
                "taken, and its DIDs differ from the repository's newest keyring; give that passphrase"
            ) from None
        shutil.copyfile(newest, restored)
        say("the snapshot's keyring was sealed under an older passphrase; restored the newest one")
        opened = Keyring.unlock(restored, passphrase)
    if opened.data_key != keys.data_key:
        raise BackupError("the snapshot's keyring holds another data key than the repository's")


def _sweep_restoring(parent: Path) -> None:
    """Remove what a restore killed midway left beside the home (its process is gone)."""
    for entry in parent.iterdir():
        match = _RESTORING.fullmatch(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(2))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
