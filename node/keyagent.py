"""The key agent: the unlocked keys of one home, held in a process's memory behind a Unix
socket, so that the owner types the passphrase once (like ssh-agent or gpg-agent).

Who holds the keys. `flurry unlock` (and `flurry init` on a terminal) starts a small agent
process (``python -m node.keyagent``) and hands it the keys through a pipe; it ends after an
idle time (``Config.agent_timeout_minutes``, 15 by default) or at `flurry lock`, zeroing the
key bytes it holds. While `flurry serve` or the terminal app runs, that process is the agent
instead. `flurry serve` with no passphrase at hand (as under systemd) binds the socket locked
and waits until `flurry unlock` sends it the passphrase.

Where. One socket per home, named from a hash of the home's path, in a folder of this user's
(0700) under FLURRY_RUNTIME_DIR, else XDG_RUNTIME_DIR, else /tmp. A folder that is a symbolic
link, belongs to another user or is open to others is refused, by the agent and its clients
alike: a client must not hand its passphrase to, or take keys from, someone else's socket.

Who may talk to it. Anyone running as the agent's own user, and no one else: the socket is 0600
in a 0700 folder, and each connection's peer credentials (SO_PEERCRED) are checked on both
ends. A process of the same user could read the keys anyway (it can read the keyring and
watch the passphrase being typed); the agent adds no one to those who can. It marks itself not
dumpable (no core files; /proc/PID/mem closed to other processes of the same user, as
ssh-agent does).

Wire. One request per connection: a 4-byte big-endian length, then that many bytes of a JSON
object ``{"op": "status" | "keys" | "lock" | "unlock", ...}``; the answer is framed the same
way, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A length over MAX_MESSAGE is
refused before a byte of the body is read; a connection that stalls is dropped.

Staleness. The agent names the keyring file it unlocked by its SHA-256; a client compares that
and the DIDs with the keyring on disk, and ignores (and reports) an agent whose keyring has
changed since (a new passphrase, a rotated key, another node at the same path).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import json
import os
import resource
import select
import signal
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.did_key import did_key_from_ed25519_public
from identity.keyring import Keyring, KeyringError, UnlockedKeyring
from node.errors import NodeError
from node.home import Home

MAX_MESSAGE = 16 * 1024  # a passphrase or three keys fit many times over
CONNECTION_TIMEOUT_S = 5.0  # a peer that stalls mid-request is dropped after this
UNLOCK_TIMEOUT_S = 120.0  # Argon2id on a busy small box can take a while
START_TIMEOUT_S = 30.0  # the agent process importing the project on a busy box
KINDS = ("agent", "serve", "tui")  # who holds the keys: the agent process, `flurry serve`, the app
_HEADER = struct.Struct(">I")
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_KEY_LENGTH = 32


class KeyAgentError(NodeError):
    """The key agent cannot be used, or refused a request; the message says why."""


class StaleAgent(KeyAgentError):
    """The agent holds keys for a keyring that has changed since it was unlocked."""


class AgentRunning(KeyAgentError):
    """Another process already answers on this home's agent socket."""

    def __init__(self, message: str, state: dict[str, Any]) -> None:
        super().__init__(message)
        self.state = state


# --- where the socket lives -------------------------------------------------------------------


def agent_folder(*, create: bool = False) -> Path:
    """This user's private folder for agent sockets, checked (see the module's docstring)."""
    base = os.environ.get("FLURRY_RUNTIME_DIR") or os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    folder = Path(base) / f"flurry-agent-{os.getuid()}"
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
    info = os.lstat(folder)  # lstat: a symbolic link is judged as the link, never followed
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise KeyAgentError(
            f"{folder} is not a plain folder (a symbolic link?); refusing to keep keys behind it. "
            "Remove it, or set XDG_RUNTIME_DIR to a private folder."
        )
    if info.st_uid != os.getuid():
        raise KeyAgentError(
            f"{folder} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}); refusing to "
            "use a key agent there. Remove it, or set XDG_RUNTIME_DIR to a private folder."
        )
    if info.st_mode & 0o077:
        raise KeyAgentError(
            f"{folder} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); refusing to "
            "use a key agent there. `chmod 700` it, or remove it."
        )
    return folder


def socket_name(home: Home) -> str:
    """The socket's file name: one per home, from a hash of its resolved path."""
    return hashlib.sha256(str(home.root.resolve()).encode()).hexdigest()[:20] + ".sock"


def fingerprint(keyring: Path) -> str:
    """What names the keyring file as it is now: its SHA-256."""
    return "sha256:" + hashlib.sha256(keyring.read_bytes()).hexdigest()


# --- the wire ---------------------------------------------------------------------------------


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    conn.sendall(_HEADER.pack(len(body)) + body)


def _receive(conn: socket.socket) -> dict[str, Any]:
    """One framed JSON object; ValueError with a message for the peer if it is not one."""
    header = _recv_exactly(conn, _HEADER.size)
    if header is None:
        raise ValueError("malformed request: the connection ended before a length")
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:  # said before a byte of the body is read
        raise ValueError(f"request of {size} bytes refused: the limit is {MAX_MESSAGE} bytes")
    body = _recv_exactly(conn, size)
    if body is None:
        raise ValueError(f"malformed request: the connection ended before its {size} bytes")
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("malformed request: not UTF-8 JSON") from None
    if not isinstance(message, dict):
        raise ValueError("malformed request: not a JSON object")
    return message


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = _UCRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return uid


# --- the server: the agent process, `flurry serve` and the app ---------------------------------


class _Held:
    """The keys as the agent keeps them: bytearrays, so that they can be zeroed at the end."""

    def __init__(self, keys: UnlockedKeyring, keyring_fingerprint: str) -> None:
        self.owner_did, self.node_did = keys.owner_did, keys.node_did
        self.fingerprint = keyring_fingerprint
        self.secret = bytearray(
            keys.data_key + keys.owner_key.private_bytes_raw() + keys.node_key.private_bytes_raw()
        )

    def to_json(self) -> dict[str, Any]:
        part = [
            bytes(self.secret[i : i + _KEY_LENGTH]) for i in range(0, 3 * _KEY_LENGTH, _KEY_LENGTH)
        ]
        return {
            "owner_did": self.owner_did,
            "node_did": self.node_did,
            "fingerprint": self.fingerprint,
            "data_key": base64.b64encode(part[0]).decode(),
            "owner_seed": base64.b64encode(part[1]).decode(),
            "node_seed": base64.b64encode(part[2]).decode(),
        }

    def wipe(self) -> None:
        self.secret[:] = bytes(len(self.secret))


class AgentServer:
    """The home's agent socket, answering from this process.

    ``kind`` is who holds the keys (KINDS). ``keys`` None: locked, waiting for an ``unlock``
    request with the passphrase (`flurry serve` with none at hand). ``idle_timeout_s``: for the
    agent process, how long it lives unused (None: until `flurry lock`)."""

    def __init__(
        self,
        home: Home,
        kind: str,
        keys: UnlockedKeyring | None = None,
        *,
        keyring_fingerprint: str | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        assert kind in KINDS
        self.home, self.kind, self.idle_timeout_s = home, kind, idle_timeout_s
        # The agent process keeps only the bytes it can zero (_Held); serve and the app hand
        # theirs to the node anyway.
        self.keys = keys if kind != "agent" else None
        self._held = _Held(keys, keyring_fingerprint or fingerprint(home.keyring)) if keys else None
        self.unlocked = threading.Event()
        if keys is not None:
            self.unlocked.set()
        self.stopped = threading.Event()
        self._last_used = time.monotonic()
        self._state = threading.Lock()
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._inode: int | None = None
        self._serving = False
        self.path: Path | None = None

    # life cycle

    def bind(self, *, take_over: bool = True) -> None:
        """Listen on the home's socket. A dead socket left by a crash is replaced; a live agent
        process is ended and replaced when ``take_over``; anything else raises AgentRunning."""
        path = agent_folder(create=True) / socket_name(self.home)
        if path.exists() or path.is_symlink():
            try:
                state = status(self.home)
            except KeyAgentError:
                state = None  # not a socket of this user's that answers: a leftover
            if state is not None:
                if not (take_over and state.get("kind") == "agent"):
                    raise AgentRunning(
                        f"{describe(state)} already holds the keys of {self.home.root}", state
                    )
                request(self.home, {"op": "lock"})  # it unlinks its socket before it answers
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        agent = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                agent._handle(self.request)

        server = socketserver.ThreadingUnixStreamServer(str(path), Handler, bind_and_activate=False)
        server.daemon_threads = True
        try:
            server.server_bind()
            os.chmod(path, 0o600)  # the folder is 0700 already; the socket says it again
            server.server_activate()
        except BaseException:
            server.server_close()
            raise
        self._server, self.path, self._inode = server, path, os.lstat(path).st_ino

    def start(self) -> None:
        """Answer requests in a thread of this process until close()."""
        assert self._server is not None, "bind() first"
        self._serving = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        ).start()

    def wait_unlocked(self) -> UnlockedKeyring:
        """Block until an ``unlock`` request brings the right passphrase; returns the keys."""
        while not self.unlocked.wait(0.2):  # short waits: signals are handled between them
            pass
        assert self.keys is not None
        return self.keys

    def run_until_idle(self) -> None:
        """The agent process's life: answer until locked, idle too long, or its socket is gone."""
        self.start()
        while not self.stopped.wait(0.2):
            if self.idle_timeout_s and time.monotonic() - self._last_used > self.idle_timeout_s:
                break
            if not self._socket_is_ours():  # removed with its folder: nobody can reach it
                break
        self.close()

    def close(self) -> None:
        """Stop answering, remove the socket (if it is still this one) and zero the keys."""
        self.stopped.set()
        self._unlink()  # first: from now on a client finds no agent rather than a dying one
        if self._server is not None:
            if self._serving:  # shutdown() waits for serve_forever, which must have started
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._state:
            if self._held is not None:
                self._held.wipe()
            self._held = None

    def _socket_is_ours(self) -> bool:
        try:
            return self.path is not None and os.lstat(self.path).st_ino == self._inode
        except FileNotFoundError:
            return False

    def _unlink(self) -> None:
        if self._socket_is_ours():
            assert self.path is not None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    # requests

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(CONNECTION_TIMEOUT_S)
        try:
            uid = _peer_uid(conn)
            if uid != os.getuid():
                _send(
                    conn,
                    {
                        "ok": False,
                        "error": f"refused: this key agent answers uid {os.getuid()} only, not uid {uid}",
                    },
                )
                return
            try:
                message = _receive(conn)
            except ValueError as e:
                _send(conn, {"ok": False, "error": str(e)})
                return
            reply, stop = self.answer(message)
            if stop:  # `flurry lock`: gone from the folder before it says so
                self._unlink()
            _send(conn, reply)
            if stop:
                self.stopped.set()
        except OSError:
            pass  # a peer that went away or stalled: nothing to tell it

    def answer(self, message: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The reply to one request, and whether the agent ends after it."""
        op = message.get("op")
        if op == "status":
            return self._status(), False
        if op == "keys":
            with self._state:
                if self._held is None:
                    return {
                        "ok": False,
                        "error": f"{describe(self._status())} is locked: `flurry unlock` unlocks it",
                    }, False
                self._last_used = time.monotonic()
                return {
                    "ok": True,
                    **self._held.to_json(),
                    "kind": self.kind,
                    "pid": os.getpid(),
                }, False
        if op == "lock":
            if self.kind != "agent":
                return {
                    "ok": False,
                    "error": f"{describe(self._status())} holds the keys while it runs; stop it to lock",
                }, False
            return {"ok": True}, True
        if op == "unlock":
            passphrase = message.get("passphrase")
            if not isinstance(passphrase, str):
                return {
                    "ok": False,
                    "error": "malformed request: 'unlock' needs a 'passphrase' string",
                }, False
            return self._unlock(passphrase), False
        return {
            "ok": False,
            "error": f"malformed request: unknown op {op!r} (status, keys, lock, unlock)",
        }, False

    def _unlock(self, passphrase: str) -> dict[str, Any]:
        if self.unlocked.is_set():
            return {"ok": True, "already": True}
        try:
            before = fingerprint(self.home.keyring)
            keys = Keyring.unlock(self.home.keyring, passphrase)
        except (KeyringError, OSError) as e:
            return {"ok": False, "error": str(e)}
        with self._state:
            if self._held is None:
                self.keys, self._held = keys, _Held(keys, before)
                self._last_used = time.monotonic()
        self.unlocked.set()
        return {"ok": True}

    def _status(self) -> dict[str, Any]:
        held = self._held
        idle_left = (
            max(0.0, self.idle_timeout_s - (time.monotonic() - self._last_used))
            if self.idle_timeout_s
            else None
        )
        return {
            "ok": True,
            "kind": self.kind,
            "pid": os.getpid(),
            "locked": held is None,
            "owner_did": held.owner_did if held else None,
            "idle_timeout_s": self.idle_timeout_s,
            "idle_left_s": idle_left,
        }


def describe(state: dict[str, Any]) -> str:
    names = {"agent": "the key agent", "serve": "flurry serve", "tui": "the flurry app"}
    return f"{names.get(state.get('kind', ''), 'a key agent')} (pid {state.get('pid')})"


# --- the client -------------------------------------------------------------------------------


def request(
    home: Home, message: dict[str, Any], *, timeout: float = CONNECTION_TIMEOUT_S
) -> dict[str, Any] | None:
    """Send one request to the home's agent; its reply, or None when no agent answers."""
    try:
        folder = agent_folder()
    except FileNotFoundError:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(folder / socket_name(home)))
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # no agent, or a socket left by one that died
        except OSError as e:  # e.g. a socket whose mode was changed, an agent that hangs
            raise KeyAgentError(f"cannot reach the key agent of {home.root} ({e})") from None
        # The socket could only be someone else's if the folder checks were fooled; checked
        # anyway, as a passphrase may be about to cross it.
        if (uid := _peer_uid(conn)) != os.getuid():
            raise KeyAgentError(
                f"the key agent socket of {home.root} is held by uid {uid}, not you; refusing it"
            )
        try:
            _send(conn, message)
            reply = _receive(conn)
        except (ConnectionResetError, BrokenPipeError):
            return None  # it ended while we spoke (idle timeout, `flurry lock`)
        except (OSError, ValueError) as e:
            raise KeyAgentError(
                f"the key agent of {home.root} did not answer properly ({e})"
            ) from None
    if not isinstance(reply.get("ok"), bool):
        raise KeyAgentError(f"the key agent of {home.root} gave a malformed answer")
    return reply


def status(home: Home) -> dict[str, Any] | None:
    """Who holds this home's keys (kind, pid, locked, idle_left_s), or None if no one does."""
    reply = request(home, {"op": "status"})
    return reply if reply is not None and reply["ok"] else None


def keys(home: Home) -> UnlockedKeyring | None:
    """The home's unlocked keys from its agent; None when no agent runs. Raises StaleAgent when
    the agent's keyring is not the one on disk any more, KeyAgentError when it is locked."""
    reply = request(home, {"op": "keys"})
    if reply is None:
        return None
    if not reply["ok"]:
        raise KeyAgentError(str(reply.get("error")))
    try:
        data_key, owner_seed, node_seed = (
            base64.b64decode(reply[name], validate=True)
            for name in ("data_key", "owner_seed", "node_seed")
        )
        if not len(data_key) == len(owner_seed) == len(node_seed) == _KEY_LENGTH:
            raise ValueError("a key of the wrong length")
        owner_key = Ed25519PrivateKey.from_private_bytes(owner_seed)
        node_key = Ed25519PrivateKey.from_private_bytes(node_seed)
        claimed = (str(reply["owner_did"]), str(reply["node_did"]), str(reply["fingerprint"]))
    except (KeyError, TypeError, ValueError) as e:
        raise KeyAgentError(f"the key agent of {home.root} gave malformed keys ({e})") from None
    public = Keyring.read_public(home.keyring)
    dids = (_did_of(owner_key), _did_of(node_key))
    if (
        claimed[2] != fingerprint(home.keyring)
        or dids != claimed[:2]
        or dids != (public["owner_did"], public["node_did"])
    ):
        holder = describe(reply)
        remedy = (
            "`flurry lock` ends it, `flurry unlock` starts a fresh one"
            if reply.get("kind") == "agent"
            else "restart it to use the keyring as it is now"
        )
        raise StaleAgent(
            f"ignoring {holder}: it holds the keys of {home.keyring} as the file was when it was "
            f"unlocked, and the file has changed since. {remedy}."
        )
    return UnlockedKeyring(home.keyring, dids[0], dids[1], data_key, owner_key, node_key)


def _did_of(key: Ed25519PrivateKey) -> str:
    return did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def unlock_waiting(home: Home, passphrase: str) -> dict[str, Any]:
    """Send the passphrase to the locked `flurry serve` waiting on this home's socket."""
    reply = request(home, {"op": "unlock", "passphrase": passphrase}, timeout=UNLOCK_TIMEOUT_S)
    if reply is None:
        raise KeyAgentError(f"nothing waits to be unlocked for {home.root}")
    if not reply["ok"]:
        raise KeyAgentError(str(reply.get("error")))
    return reply


def lock(home: Home) -> bool:
    """End the home's agent process, if one runs; True if one did. No error when none runs.
    `flurry serve` and the app keep their keys while they run (they are not ended here).
    Commands that change the keyring call this so that no agent keeps the old keys."""
    try:
        reply = request(home, {"op": "lock"})
    except KeyAgentError:
        return False
    return bool(reply and reply["ok"])


def start(home: Home, keys: UnlockedKeyring, idle_timeout_s: float | None) -> int:
    """Start an agent process holding ``keys`` (replacing an agent process already there);
    returns its pid once it answers. The keys cross a pipe, never the disk."""
    spec = {
        "home": str(home.root),
        "idle_timeout_s": idle_timeout_s,
        **_Held(keys, fingerprint(home.keyring)).to_json(),
    }
    # The agent runs the code this process runs, whatever the working folder or PYTHONPATH.
    source = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "node.keyagent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd="/",
        env=env,
        start_new_session=True,  # not ended by the terminal's Ctrl-C or hang-up
    )
    assert process.stdin is not None and process.stdout is not None
    with process.stdin:
        process.stdin.write(json.dumps(spec).encode())
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
    line = process.stdout.readline().decode(errors="replace").strip() if ready else ""
    process.stdout.close()
    if not line.startswith("ready"):
        if process.poll() is None:
            process.kill()
        raise KeyAgentError(
            "the key agent did not start" + (f": {line.removeprefix('error: ')}" if line else "")
        )
    return process.pid


def _not_dumpable() -> None:
    """No core file, and /proc/PID/mem closed to other processes of the same user."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, AttributeError):
        PR_SET_DUMPABLE = 4
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def main() -> int:
    """The agent process: keys from stdin (from `start`), "ready PID" on stdout, then serve."""
    os.umask(0o077)
    _not_dumpable()
    spec = json.loads(sys.stdin.buffer.read(MAX_MESSAGE))
    seeds = [base64.b64decode(spec[name]) for name in ("data_key", "owner_seed", "node_seed")]
    home = Home(Path(spec["home"]))
    held_keys = UnlockedKeyring(
        home.keyring,
        spec["owner_did"],
        spec["node_did"],
        seeds[0],
        Ed25519PrivateKey.from_private_bytes(seeds[1]),
        Ed25519PrivateKey.from_private_bytes(seeds[2]),
    )
    agent = AgentServer(
        home,
        "agent",
        held_keys,
        keyring_fingerprint=spec["fingerprint"],
        idle_timeout_s=spec["idle_timeout_s"],
    )
    del spec, seeds, held_keys
    try:
        agent.bind(take_over=True)
    except (KeyAgentError, OSError) as e:
        print(f"error: {e}", flush=True)
        return 1
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stopped.set())
    print(f"ready {os.getpid()}", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    agent.run_until_idle()
    return 0


if __name__ == "__main__":
    sys.exit(main())
