"""Unlock once: the key agent (node.keyagent), `flurry unlock` and `flurry lock`, the command
line using the agent, `flurry serve` as the agent and waiting locked, and the README's first
command asking the passphrase twice. Real sockets, real agent processes, a real other uid."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PASSPHRASE, FlurryInProcess, free_port

from identity.keyring import Keyring, _checksum
from node import keyagent
from node.home import Home

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534


@pytest.fixture
def home(env, monkeypatch) -> Iterator[Home]:
    """A home made with `flurry init` (passphrase given, so no agent yet); every agent of it
    is ended afterwards. This process's environment names the test's runtime folder, so that
    keyagent's own functions find the same socket as the commands."""
    monkeypatch.setenv("FLURRY_RUNTIME_DIR", env["FLURRY_RUNTIME_DIR"])
    monkeypatch.setenv("FLURRY_HOME", env["FLURRY_HOME"])
    home = Home(Path(env["FLURRY_HOME"]))
    FlurryInProcess(env, home.root.parent)("init")
    yield home
    keyagent.lock(home)


@pytest.fixture
def asking(env, tmp_path) -> FlurryInProcess:
    """`flurry` with no passphrase given and no terminal: where it would ask, it fails saying so."""
    return FlurryInProcess({k: v for k, v in env.items() if k != "FLURRY_PASSPHRASE"}, tmp_path)


def _ended(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (gone, or a zombie nobody reaped yet) by then."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _start_agent(home: Home, idle_timeout_s: float | None = None) -> int:
    return keyagent.start(home, Keyring.unlock(home.keyring, PASSPHRASE), idle_timeout_s)


def _raw(home: Home, payload: bytes) -> dict:
    """Send bytes as they are to the home's agent socket; its framed reply."""
    path = keyagent.agent_folder() / keyagent.socket_name(home)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(payload)
        return _read_reply(s)


def _read_reply(s: socket.socket) -> dict:
    header = b""
    while len(header) < 4:
        chunk = s.recv(4 - len(header))
        assert chunk, "the agent closed the connection without a reply"
        header += chunk
    (size,) = struct.unpack(">I", header)
    body = b""
    while len(body) < size:
        body += s.recv(size - len(body))
    return json.loads(body)


def _frame(message: object) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


# --- unlock once ----------------------------------------------------------------------------


def test_after_unlock_commands_do_not_ask_and_after_lock_they_ask_again(home, cli, asking):
    before = asking("status", check=False)
    assert before.returncode == 1 and "no passphrase" in before.stderr

    unlocked = cli("unlock")
    assert "Unlocked: a key agent" in unlocked.stdout and "15 minutes" in unlocked.stdout
    state = keyagent.status(home)
    assert state is not None and state["kind"] == "agent" and not state["locked"]

    # No passphrase anywhere now: the agent's keys open the node, and sign for its owner.
    status = asking("status")
    assert Keyring.read_public(home.keyring)["owner_did"] in status.stdout
    assert "Already unlocked" in asking("unlock").stdout  # reused, not asked again
    # The agent's keys are the keyring's, not merely keys that look right.
    keys, truth = keyagent.keys(home), Keyring.unlock(home.keyring, PASSPHRASE)
    assert keys is not None and keys.data_key == truth.data_key
    assert keys.owner_key.private_bytes_raw() == truth.owner_key.private_bytes_raw()

    locked = asking("lock")
    assert f"pid {state['pid']}" in locked.stdout and "ended" in locked.stdout
    assert _ended(state["pid"])
    again = asking("status", check=False)
    assert again.returncode == 1 and "no passphrase" in again.stderr
    assert "Already locked" in asking("lock").stdout
    assert keyagent.lock(home) is False  # for other commands to call: no error when none runs


def test_the_idle_timeout_ends_the_agent(home, cli, asking):
    cli("unlock", "--timeout", "0.02")  # 1.2 seconds
    state = keyagent.status(home)
    assert state is not None and state["idle_timeout_s"] == pytest.approx(1.2)
    deadline = time.monotonic() + 30
    while keyagent.status(home) is not None:
        assert time.monotonic() < deadline, "the agent outlived its idle timeout"
        time.sleep(0.1)
    assert _ended(state["pid"])
    assert not list(keyagent.agent_folder().iterdir())  # its socket went with it
    assert "no passphrase" in asking("status", check=False).stderr


def test_a_keyring_changed_since_unlock_is_reported_and_not_trusted(home, cli, asking):
    cli("unlock")
    pid = keyagent.status(home)["pid"]
    # The keyring rewritten with the same keys (as a passphrase change does): another file.
    document = json.loads(home.keyring.read_text())
    document["created"] = "2020-01-01T00:00:00Z"
    document["checksum"] = _checksum(document)
    home.keyring.write_text(json.dumps(document))
    with pytest.raises(keyagent.StaleAgent):
        keyagent.keys(home)
    result = asking("status", check=False)
    assert "has changed since" in result.stderr and "no passphrase" in result.stderr
    # `flurry unlock` replaces the stale agent with one for the keyring as it is.
    replaced = cli("unlock")
    assert "has changed since" in replaced.stderr and "Unlocked" in replaced.stdout
    assert _ended(pid)
    assert "did:key:" in asking("status").stdout

    # Another node at the same path (new keys): the agent's keys are not this node's.
    cli("unlock")
    shutil.rmtree(home.root)
    cli("init")
    with pytest.raises(keyagent.StaleAgent):
        keyagent.keys(home)


def test_an_agent_killed_with_sigkill_leaves_nothing_that_breaks(home, cli, asking):
    """kill -9 leaves its socket behind: commands take it for no agent and ask; the next
    `flurry unlock` replaces it."""
    cli("unlock")
    state = keyagent.status(home)
    os.kill(state["pid"], signal.SIGKILL)
    assert _ended(state["pid"])
    assert (keyagent.agent_folder() / keyagent.socket_name(home)).exists()  # left behind
    assert keyagent.status(home) is None
    result = asking("status", check=False)
    assert "no passphrase" in result.stderr and "Traceback" not in result.stderr
    assert "Unlocked" in cli("unlock").stdout
    assert "did:key:" in asking("status").stdout


# --- who may talk to it ------------------------------------------------------------------------


def _as_nobody(path: str) -> dict:
    """Connect to the agent socket at ``path`` from a forked child running as uid 65534 and ask
    for the keys; what happened, as the child saw it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another user, on a real connection
        seen: dict[str, object]
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(3)
                try:
                    s.connect(path)
                except OSError as e:
                    seen = {"connect": type(e).__name__}
                else:
                    # A refused peer is told at once, before it says anything (what it would
                    # send could not be read any more); an agent that waits is sent the request.
                    try:
                        seen = {"reply": _read_reply(s)}
                    except TimeoutError:
                        s.sendall(_frame({"op": "keys"}))
                        seen = {"reply": _read_reply(s)}
        except BaseException as e:  # anything at all goes back to the test, never up pytest
            seen = {"crash": repr(e)}
        os.write(write, json.dumps(seen).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        seen = json.loads(f.read())
    os.waitpid(pid, 0)
    return seen


@pytest.mark.skipif(os.getuid() != 0, reason="changing to another uid needs root")
def test_another_user_is_refused(home):
    _start_agent(home)
    folder = keyagent.agent_folder()
    socket_path = folder / keyagent.socket_name(home)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct(socket_path.stat().st_mode & 0o777) == "0o600"
    # As it is: the folder keeps the other user out before the agent is reached.
    assert _as_nobody(str(socket_path)) == {"connect": "PermissionError"}
    # With the folder and the socket opened to everyone (a mistake, or an attack on the folder):
    # the agent still refuses, on the peer's credentials, and gives nothing away.
    # (The test's runtime folder above it is a private temporary folder: opened too.)
    opened = {folder.parent: 0o711, folder: 0o755, socket_path: 0o777}
    modes = {path: path.stat().st_mode & 0o777 for path in opened}
    for path, mode in opened.items():
        path.chmod(mode)
    try:
        seen = _as_nobody(str(socket_path))
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert "reply" in seen, seen
    reply = seen["reply"]
    assert reply["ok"] is False and f"not uid {NOBODY}" in reply["error"]
    assert set(reply) == {"ok", "error"}
    assert keyagent.keys(home) is not None  # the owner still gets them


@pytest.mark.parametrize("kind", ["symlink", "foreign", "open"])
def test_an_unsafe_socket_folder_is_refused(home, cli, asking, tmp_path, kind):
    folder = Path(os.environ["FLURRY_RUNTIME_DIR"]) / f"flurry-agent-{os.getuid()}"
    if kind == "symlink":  # to a folder that would otherwise pass every check
        target = tmp_path / "elsewhere"
        target.mkdir(mode=0o700)
        folder.symlink_to(target)
        expected = "symbolic link"
    else:
        folder.mkdir(mode=0o700)
        if kind == "foreign":
            if os.getuid() != 0:
                pytest.skip("giving a folder to another user needs root")
            os.chown(folder, NOBODY, NOBODY)
            expected = f"belongs to uid {NOBODY}"
        else:
            folder.chmod(0o755)
            expected = "open to other users"
    result = cli("unlock", check=False)
    assert result.returncode == 1 and expected in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(keyagent.KeyAgentError, match=expected):
        keyagent.status(home)
    # A command without the passphrase says why it does not use the agent, then asks.
    asked = asking("status", check=False)
    assert expected in asked.stderr and "no passphrase" in asked.stderr
    assert not any(p.suffix == ".sock" for p in Path(folder).iterdir())


# --- the wire ---------------------------------------------------------------------------------


def test_malformed_and_oversized_requests_are_refused_and_nothing_is_lost(home):
    _start_agent(home)
    huge = 10 * 1024 * 1024
    # The length is refused before the body is read: only a few bytes of it are ever sent.
    reply = _raw(home, struct.pack(">I", huge) + b"{}")
    assert reply == {
        "ok": False,
        "error": f"request of {huge} bytes refused: the limit is {keyagent.MAX_MESSAGE} bytes",
    }
    cases = {
        b"\xff\xfe not json": "not UTF-8 JSON",
        json.dumps([1, 2]).encode(): "not a JSON object",
        json.dumps({"op": "give me everything"}).encode(): "unknown op 'give me everything'",
        json.dumps({"no": "op"}).encode(): "unknown op None",
        json.dumps({"op": "unlock", "passphrase": 42}).encode(): "needs a 'passphrase' string",
    }
    for body, error in cases.items():
        reply = _raw(home, struct.pack(">I", len(body)) + body)
        assert reply["ok"] is False and error in reply["error"], body
        assert reply["error"].startswith(("malformed request", "request of"))
    # A length promising more than is sent, then the end of the connection.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(keyagent.agent_folder() / keyagent.socket_name(home)))
        s.sendall(struct.pack(">I", 100) + b"{")
        s.shutdown(socket.SHUT_WR)
        assert "ended before its 100 bytes" in _read_reply(s)["error"]
    # A peer that connects and says nothing does not hold up the others.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(keyagent.agent_folder() / keyagent.socket_name(home)))
        keys = keyagent.keys(home)
    assert keys is not None and keys.owner_did == Keyring.read_public(home.keyring)["owner_did"]


# --- serve is the agent, and waits locked -------------------------------------------------------


def test_serve_waits_locked_until_flurry_unlock(home, env, cli, asking, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "serve", "--port", str(port)],
            env={k: v for k, v in env.items() if k != "FLURRY_PASSPHRASE"},
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,  # as under systemd: no terminal, no passphrase
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while "Waiting for `flurry unlock`" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert not (home.root / "serve.json").exists()  # not serving yet
        state = keyagent.status(home)
        assert state == {**state, "kind": "serve", "locked": True, "pid": server.pid}
        with pytest.raises(keyagent.KeyAgentError, match="is locked"):
            keyagent.keys(home)  # no keys before the passphrase

        wrong = cli("unlock", check=False, FLURRY_PASSPHRASE="not the passphrase")
        assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr
        assert keyagent.status(home)["locked"]  # still waiting

        assert f"flurry serve (pid {server.pid})" in cli("unlock").stdout
        while not (home.root / "serve.json").exists():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        # Serving, and the agent: a command signing requests to it asks for nothing.
        assert "no grants yet" in asking("grants", "list").stdout
        refused = asking("lock", check=False)
        assert refused.returncode == 1 and "stop it to lock" in refused.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text()
    assert keyagent.status(home) is None  # the agent went with it


def test_serve_with_a_passphrase_takes_over_the_agent(home, cli, flurry, asking):
    cli("unlock")
    agent_pid = keyagent.status(home)["pid"]
    with flurry.serving():  # FLURRY_PASSPHRASE given: serve starts as it always did
        state = keyagent.status(home)
        assert state is not None and state["kind"] == "serve" and not state["locked"]
        assert _ended(agent_pid)  # one holder of the keys at a time
        assert "no grants yet" in asking("grants", "list").stdout


# --- on a terminal: the README's first command, the app as the agent ------------------------------


def _on_a_terminal(
    command: str, environment: dict[str, str], cwd: Path, when_up: Callable[[], None]
) -> tuple[int, str, int]:
    """Run the shell ``command`` on a pseudo-terminal (80x24), typing the passphrase at each
    prompt, as the user would; once the chat app is up, call ``when_up`` and quit it with
    Ctrl+Q. Returns the exit status, what the terminal showed, and how often it was typed."""
    import pty
    from fcntl import ioctl
    from termios import TIOCSWINSZ

    pid, fd = pty.fork()
    if pid == 0:  # the child: a shell on a terminal, as the user's
        os.chdir(cwd)
        os.execve("/bin/sh", ["/bin/sh", "-c", command], {**environment, "TERM": "xterm-256color"})
    ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    seen, typed, up = b"", 0, False
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break  # the terminal closed: the shell has ended
            plain = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", seen)
            if plain.count(b"Passphrase:") + plain.count(b"Repeat for confirmation:") > typed:
                os.write(fd, PASSPHRASE.encode() + b"\r")
                typed += 1
            if not up and b"Identity" in plain:  # the chat app is drawn
                up = True
                try:
                    when_up()
                finally:
                    os.write(fd, b"\x11")  # Ctrl+Q
    finally:
        if not up:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", seen.decode("utf-8", "replace"))
    assert up, text[-3000:]
    return os.waitstatus_to_exitcode(status), text, typed


def test_the_readme_first_command_asks_the_passphrase_twice(env, tmp_path, monkeypatch):
    """`flurry init && flurry add examples/notes && flurry chat` on a real terminal: init asks
    the passphrase and its confirmation, and then nothing asks again until the chat app is up."""
    monkeypatch.setenv("FLURRY_RUNTIME_DIR", env["FLURRY_RUNTIME_DIR"])
    shutil.copytree(REPO / "examples" / "notes", tmp_path / "examples" / "notes")
    flurry = f"{sys.executable} -m node.cli"
    home = Home(Path(env["FLURRY_HOME"]))
    held: list[dict | None] = []
    try:
        code, text, typed = _on_a_terminal(
            f"{flurry} init && {flurry} add examples/notes && {flurry} chat",
            {k: v for k, v in env.items() if k != "FLURRY_PASSPHRASE"},
            tmp_path,
            lambda: held.append(keyagent.status(home)),
        )
    finally:
        keyagent.lock(home)
    assert code == 0 and "Traceback" not in text, text[-3000:]
    assert text.count("Passphrase:") == 1 and text.count("Repeat for confirmation:") == 1
    assert typed == 2
    assert "Unlocked: a key agent" in text and "added 4" in text
    assert held[0] is not None and held[0]["kind"] == "agent"  # init's agent, still holding


def test_the_app_is_the_agent_while_it_runs(home, env, asking, tmp_path):
    """`flurry tui` with the passphrase given and no agent: while the app runs, commands get the
    keys from it (here one signing a request to the app's own API); afterwards no one holds them."""
    seen: dict[str, object] = {}

    def while_up() -> None:
        seen["state"] = keyagent.status(home)
        seen["grants"] = asking("grants", "list", check=False)

    code, text, typed = _on_a_terminal(f"{sys.executable} -m node.cli tui", env, tmp_path, while_up)
    assert code == 0 and typed == 0 and "Traceback" not in text
    state = seen["state"]
    assert isinstance(state, dict) and state["kind"] == "tui" and not state["locked"]
    grants = seen["grants"]
    assert isinstance(grants, subprocess.CompletedProcess)
    assert grants.returncode == 0 and "no grants yet" in grants.stdout, grants.stderr
    assert keyagent.status(home) is None
