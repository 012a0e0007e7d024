"""The node's home folder: where it is, what lives in it, its settings, and its lock.

    <home>/keyring.json      keys and the wrapped data key, sealed under the passphrase
    <home>/vault.sqlite3     the sealed record store (with -wal and -shm beside it)
    <home>/index.sealed      the sealed snapshot of the vector and lexical indexes
    <home>/config.json       settings (which models; nothing the owner wrote)
    <home>/skills/           installed skills' code, one folder each (pip --target)
    <home>/models/           GGUF files (FLURRY_MODELS can point elsewhere, e.g. to share them)
    <home>/lock              held by the one process that has the home open
    <home>/serve.json        while `flurry serve` runs: its URL and pid

While unlocked, the indexes live in a memory-backed folder (FLURRY_RUNTIME_DIR, else
/dev/shm, else $XDG_RUNTIME_DIR), never on persistent disk.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import platformdirs

from agent.models import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL
from node.errors import NodeError


class HomeError(NodeError):
    """The home folder is missing, busy or unusable; the message says what to do."""


@dataclass
class Config:
    chat_model: str = DEFAULT_CHAT_MODEL  # a catalog name or a path to a GGUF
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    n_ctx: int = 4096
    n_gpu_layers: int | None = None  # None: all layers when the build can offload
    # The origins other agents reach the node at, named in its signed agent card; empty: the
    # address `flurry serve` listens on.
    public_urls: list[str] = field(default_factory=list)
    # How long the key agent `flurry unlock` starts keeps the keys unused; 0: until `flurry lock`.
    agent_timeout_minutes: float = 15.0
    log_format: str = "text"  # `flurry serve`'s log lines: "text" or "json" (node.logs)


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls, override: str | None = None) -> Home:
        chosen = override or os.environ.get("FLURRY_HOME") or platformdirs.user_data_dir("flurry")
        return cls(Path(chosen).expanduser().absolute())

    @property
    def keyring(self) -> Path:
        return self.root / "keyring.json"

    @property
    def vault(self) -> Path:
        return self.root / "vault.sqlite3"

    @property
    def index_snapshot(self) -> Path:
        return self.root / "index.sealed"

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def skills(self) -> Path:
        """Each installed skill's code, in a folder of its own."""
        return self.root / "skills"

    @property
    def models(self) -> Path:
        return Path(os.environ.get("FLURRY_MODELS") or self.root / "models").expanduser()

    @property
    def serve_info(self) -> Path:
        """Written by `flurry serve` while it runs: its URL and pid."""
        return self.root / "serve.json"

    def running_node(self) -> str | None:
        """The URL of the node serving this home, if one runs."""
        try:
            data = json.loads(self.serve_info.read_text())
            os.kill(int(data["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return str(data["url"])

    def exists(self) -> bool:
        return self.keyring.exists()

    def require(self) -> None:
        if not self.exists():
            raise HomeError(
                f"no flurry node at {self.root}: run `flurry init` first (or set FLURRY_HOME)"
            )

    def load_config(self) -> Config:
        if not self.config_path.exists():
            return Config()
        try:
            return Config(**json.loads(self.config_path.read_text()))
        except (ValueError, TypeError) as e:
            raise HomeError(f"{self.config_path} is not a valid flurry config: {e}") from None

    def save_config(self, config: Config) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(config), indent=2) + "\n")
        os.replace(tmp, self.config_path)


def private_files() -> None:
    """Make everything this process creates from now on its owner's alone: files 0600, folders
    0700. The vault and its -wal and -shm, the index snapshot, the config, serve.json, the
    skills' folders and the libraries' own files (chromadb's, SQLite's) are all created by
    code that takes the umask, so the umask is the one place that covers them all; the home's
    0700 alone protected them before, and not when the home sits in a shared folder."""
    os.umask(0o077)


def runtime_dir() -> Path:
    """A memory-backed folder for the unlocked indexes."""
    candidates = [
        os.environ.get("FLURRY_RUNTIME_DIR"),
        "/dev/shm",
        os.environ.get("XDG_RUNTIME_DIR"),
    ]
    for c in candidates:
        if c and os.path.isdir(c) and os.access(c, os.W_OK):
            return Path(c)
    raise HomeError(
        "no memory-backed folder for the unlocked indexes (tried FLURRY_RUNTIME_DIR, /dev/shm, "
        "XDG_RUNTIME_DIR); set FLURRY_RUNTIME_DIR to a tmpfs folder"
    )


def try_lock(path: Path) -> int | None:
    """An exclusive flock on ``path`` (made 0600 if new): its descriptor (closing it unlocks),
    or None when another process holds it. Never waits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class HomeLock:
    """One process at a time may open a home: chromadb and the snapshots are not multi-process safe."""

    def __init__(self, home: Home) -> None:
        self._path = home.root / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = try_lock(self._path)
        if fd is None:
            raise HomeError(
                f"another flurry process has {self._path.parent} open; wait for it to finish "
                "(or talk to it, once `flurry serve` runs)"
            )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def describe_file(path: Path) -> dict | None:
    """A file of the home as `flurry status` shows it (None while there is none)."""
    if not path.exists():
        return None
    st = path.stat()
    return {
        "bytes": st.st_size,
        "saved_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)),
    }
