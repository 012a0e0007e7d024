"""`flurry service …` (node.service) and the logs of `flurry serve` (node.logs).

systemd is the edge of the world here: the machine these tests were written on has the systemd
binaries but no user service manager (`systemctl --user` answers "Failed to connect to bus"),
as in most containers. So the install is tested twice: with no systemctl on PATH (the fallback
the owner then gets) and with a fake `systemctl` (and `systemd-creds`) on PATH that records its
arguments, to check the commands issued. The unit itself is checked by the real
`systemd-analyze verify` where that binary exists.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import PASSPHRASE, free_port

from identity.did_key import verification_method_id
from identity.keyring import Keyring
from identity.signing_client import signed_client
from node import logs
from node import service as svc

CANARY = "zqx-canary-7731-owner-secret"


def read_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file read the way systemd reads its lines: sections, keys that may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


def values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit[section] if k == key]


def words(value: str) -> list[str]:
    """A unit line's words: quotes removed, systemd's %% and $$ escapes undone."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(value)]


# --- the unit text ----------------------------------------------------------------------------


def test_the_unit_runs_serve_for_its_home_with_the_home_baked_in(tmp_path):
    home = tmp_path / "my 100% home"  # a space and a specifier character, taken literally
    text = svc.unit_text(
        home=home,
        python="/opt/py thon/bin/python3",
        environment={"FLURRY_MODELS": "/srv/models"},
        writable=[Path("/srv/models")],
    )
    unit = read_unit(text)
    assert words(values(unit, "Service", "ExecStart")[0]) == [
        "/opt/py thon/bin/python3",
        "-m",
        "node.cli",
        "serve",
        "--log-format",
        "json",
    ]
    env = [w for v in values(unit, "Service", "Environment") for w in words(v)]
    assert env == [f"FLURRY_HOME={home}", "FLURRY_MODELS=/srv/models"]
    assert words(values(unit, "Service", "ReadWritePaths")[0]) == [str(home), "/srv/models"]
    assert values(unit, "Install", "WantedBy") == ["default.target"]
    # No credential: nothing about a passphrase in the unit, and it says the node waits locked.
    assert not [k for k, _ in unit["Service"] if k.startswith(("LoadCredential", "SetCredential"))]
    assert "--passphrase-file" not in text and "waits for `flurry unlock`" in text
    for hardening in ("NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict"):
        assert hardening in text.splitlines()
    # What would break the skills' sandbox stays out (and says why, in a comment).
    assert not [k for k, _ in unit["Service"] if k in ("RestrictNamespaces", "SystemCallFilter")]


@pytest.mark.parametrize("kind", ["file", "encrypted"])
def test_a_credential_reaches_serve_as_its_passphrase_file(tmp_path, kind):
    secret = tmp_path / "pass phrase"
    unit = read_unit(
        svc.unit_text(
            home=tmp_path, python="/usr/bin/python3", credential=svc.Credential(kind, secret)
        )
    )
    (exec_start,) = values(unit, "Service", "ExecStart")
    assert words(exec_start)[3:] == [
        "--passphrase-file",
        "%d/passphrase",
        "serve",
        "--log-format",
        "json",
    ]
    key = "LoadCredential" if kind == "file" else "LoadCredentialEncrypted"
    assert values(unit, "Service", key) == [f"passphrase:{secret}"]


def test_a_path_a_unit_cannot_hold_is_refused(tmp_path):
    with pytest.raises(svc.ServiceError, match="control character"):
        svc.unit_text(home=tmp_path / "a\nb", python="/usr/bin/python3")
    with pytest.raises(svc.ServiceError, match="absolute path"):
        svc.unit_text(
            home=tmp_path, python="/usr/bin/python3", credential=svc.Credential("file", Path("rel"))
        )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("kind", ["none", "file", "encrypted"])
def test_systemd_analyze_verifies_the_unit(tmp_path, kind):
    folder = tmp_path / "systemd" / "user"
    folder.mkdir(parents=True)
    home = tmp_path / "a home with 100%"
    home.mkdir()
    credential = svc.Credential(kind, None if kind == "none" else tmp_path / "secret")
    unit = folder / svc.UNIT_NAME
    unit.write_text(svc.unit_text(home=home, python=sys.executable, credential=credential))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    # --user needs a runtime folder to stand in for the user manager's; nothing is started.
    run = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    said = (run.stdout + run.stderr).strip()
    assert run.returncode == 0 and svc.UNIT_NAME not in said, said


# --- install and uninstall ----------------------------------------------------------------------


FAKE_SYSTEMCTL = """#!/bin/sh
# A stand-in for systemd at the edge of the world: it records its arguments, one call a line.
echo "systemctl $*" >> "$FAKE_SYSTEMD_LOG"
if [ "$*" = "--user show --property=Version --value" ]; then
    echo "${FAKE_SYSTEMD_VERSION:-252} (252.38-1~deb12u1)"
elif [ "$2" = "show" ]; then
    printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\nUnitFileState=enabled\\nMainPID=4242\\nResult=success\\n'
fi
"""

FAKE_JOURNALCTL = """#!/bin/sh
echo "journalctl $*" >> "$FAKE_SYSTEMD_LOG"
"""

FAKE_SYSTEMD_CREDS = """#!/bin/sh
echo "systemd-creds $*" >> "$FAKE_SYSTEMD_LOG"
# The plaintext comes on stdin: write its length where the test can see it, and a stand-in.
input=$(cat)
echo "stdin ${#input} bytes" >> "$FAKE_SYSTEMD_LOG"
for last in "$@"; do :; done
echo "sealed by a fake systemd-creds" > "$last"
"""


@pytest.fixture
def boxes(tmp_path, cli):
    """A home, a config folder, and two PATHs: one with no systemd, one with the fakes."""
    cli("init")
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    fakes = tmp_path / "fake-bin"
    fakes.mkdir()
    for name, script in (
        ("systemctl", FAKE_SYSTEMCTL),
        ("systemd-creds", FAKE_SYSTEMD_CREDS),
        ("journalctl", FAKE_JOURNALCTL),
    ):
        (fakes / name).write_text(script)
        (fakes / name).chmod(0o755)
    record = tmp_path / "systemd-calls.log"
    cli.env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), FAKE_SYSTEMD_LOG=str(record))
    return {
        "config": tmp_path / "config",
        "unit": tmp_path / "config" / "systemd" / "user" / "flurry.service",
        "no_systemd": str(bare),
        "fake_systemd": f"{fakes}:/usr/bin:/bin",
        "calls": record,
    }


def calls(boxes) -> list[str]:
    return boxes["calls"].read_text().splitlines() if boxes["calls"].exists() else []


def test_without_systemd_nothing_is_written_and_the_equivalent_is_printed(cli, boxes):
    shown = cli("service", "install", PATH=boxes["no_systemd"])
    said = shown.stdout
    assert "Not installed: there is no systemctl on this system" in said
    assert "Nothing was written" in said and not boxes["config"].exists()
    unit = read_unit(said.split(f"--- {boxes['unit']}\n")[1].split("\n---\n")[0])
    assert words(values(unit, "Service", "Environment")[0]) == [f"FLURRY_HOME={cli.home}"]
    assert "systemctl --user daemon-reload && systemctl --user enable --now flurry.service" in said
    assert "loginctl enable-linger" in said
    nohup = next(line for line in said.splitlines() if line.strip().startswith("nohup "))
    assert f"FLURRY_HOME={cli.home}" in nohup and "serve --log-format json" in nohup
    assert any(line.strip().startswith("@reboot env ") for line in said.splitlines())
    status = cli("service", "status", "--json", PATH=boxes["no_systemd"])
    assert json.loads(status.stdout) | {"why": ""} == {
        "unit": str(boxes["unit"]),
        "installed": False,
        "home": None,
        "systemd": False,
        "systemd_version": None,
        "why": "",
        "serving": None,
    }
    logs_ = cli("service", "logs", PATH=boxes["no_systemd"], check=False)
    assert logs_.returncode == 1 and "no user journal to read" in logs_.stderr
    assert "serve.log" in logs_.stderr
    gone = cli("service", "uninstall", PATH=boxes["no_systemd"])
    assert "no flurry.service was installed" in gone.stdout


def test_with_systemd_the_unit_is_written_enabled_started_and_removed(cli, boxes):
    path = boxes["fake_systemd"]
    done = cli("service", "install", PATH=path)
    assert calls(boxes) == [
        "systemctl --user show --property=Version --value",
        "systemctl --user daemon-reload",
        "systemctl --user enable --now flurry.service",
    ]
    assert f"Installed {boxes['unit']}" in done.stdout and "flurry unlock" in done.stdout
    unit = read_unit(boxes["unit"].read_text())
    env = [w for v in values(unit, "Service", "Environment") for w in words(v)]
    # What the installing shell set for the node goes with it: the models and the runtime folder.
    assert f"FLURRY_HOME={cli.home}" in env and f"FLURRY_MODELS={cli.env['FLURRY_MODELS']}" in env
    assert f"FLURRY_RUNTIME_DIR={cli.env['FLURRY_RUNTIME_DIR']}" in env
    assert words(values(unit, "Service", "ExecStart")[0])[0] == sys.executable

    # A second home cannot take the service over; the same home may install again.
    cli("--home", str(cli.home) + "-2", "init")
    taken = cli("service", "install", PATH=path, FLURRY_HOME=str(cli.home) + "-2", check=False)
    assert taken.returncode == 1 and f"already runs the node at {cli.home}" in taken.stderr
    boxes["calls"].unlink()
    cli("service", "install", PATH=path)
    assert calls(boxes)[1:] == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now flurry.service",
    ]

    status = json.loads(cli("service", "status", "--json", PATH=path).stdout)
    assert status["installed"] and status["home"] == str(cli.home)
    assert (status["ActiveState"], status["MainPID"]) == ("active", "4242")
    assert "active (running), enabled" in cli("service", "status", PATH=path).stdout

    boxes["calls"].unlink()
    cli("service", "logs", "-n", "5", PATH=path)
    assert (
        calls(boxes)[-1]
        == "journalctl --user --unit flurry.service --no-pager --output cat --lines 5"
    )

    boxes["calls"].unlink()
    gone = cli("service", "uninstall", PATH=path)
    assert calls(boxes) == [
        "systemctl --user show --property=Version --value",
        "systemctl --user disable --now flurry.service",
        "systemctl --user daemon-reload",
    ]
    assert not boxes["unit"].exists() and f"removed {boxes['unit']}" in gone.stdout


def test_a_passphrase_file_others_can_read_is_refused(cli, boxes, tmp_path):
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o640)
    refused = cli(
        "service",
        "install",
        "--credential",
        "file",
        str(secret),
        PATH=boxes["fake_systemd"],
        check=False,
    )
    assert (
        refused.returncode == 1 and "mode 0640" in refused.stderr and "chmod 600" in refused.stderr
    )
    assert not boxes["unit"].exists()

    secret.chmod(0o600)
    secret.write_text("not the passphrase\n")
    wrong = cli(
        "service",
        "install",
        "--credential",
        "file",
        str(secret),
        PATH=boxes["fake_systemd"],
        check=False,
    )
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr
    assert not boxes["unit"].exists()

    secret.write_text(PASSPHRASE + "\n")
    done = cli(
        "service", "install", "--credential", "file", str(secret), PATH=boxes["fake_systemd"]
    )
    unit = read_unit(boxes["unit"].read_text())
    assert values(unit, "Service", "LoadCredential") == [f"passphrase:{secret}"]
    assert "in plaintext on disk, readable only by you" in done.stdout


def test_an_encrypted_credential_needs_a_systemd_that_can_open_it(cli, boxes):
    old = cli(
        "service", "install", "--credential", "encrypted", PATH=boxes["fake_systemd"], check=False
    )
    assert old.returncode == 1 and "systemd 258" in old.stderr and "--credential file" in old.stderr
    assert not boxes["unit"].exists()

    boxes["calls"].unlink()
    cli(
        "service",
        "install",
        "--credential",
        "encrypted",
        PATH=boxes["fake_systemd"],
        FAKE_SYSTEMD_VERSION="258",
    )
    sealed = boxes["config"] / "flurry" / "passphrase.cred"
    assert calls(boxes)[1:3] == [
        f"systemd-creds --user --name=passphrase encrypt - {sealed.with_suffix('.tmp')}",
        f"stdin {len(PASSPHRASE)} bytes",  # on stdin, never on the command line
    ]
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    unit = read_unit(boxes["unit"].read_text())
    assert values(unit, "Service", "LoadCredentialEncrypted") == [f"passphrase:{sealed}"]
    cli("service", "uninstall", PATH=boxes["fake_systemd"])
    assert not sealed.exists() and not boxes["unit"].exists()


# --- a real user service manager ---------------------------------------------------------------

E2E_SCRIPT = """
set -e
# Everything below stays in this private mount namespace: the machine's /run is not touched.
mount --make-rshared /  # as on a booted box: the manager's credential mounts must propagate
mount -t tmpfs none /run/systemd && mkdir -p /run/systemd/system  # "booted with systemd"
mkdir -p /run/user && mount -t tmpfs -o mode=755 none /run/user && mkdir -m 700 /run/user/0
export XDG_RUNTIME_DIR=/run/user/0
/lib/systemd/systemd --user >/dev/null 2>&1 &
manager=$!
trap 'kill $manager' EXIT
for i in $(seq 50); do systemctl --user show --property=Version >/dev/null 2>&1 && break; sleep 0.2; done
"$PYTHON" -m node.cli service install --credential file "$BASE/passphrase" --port "$PORT" > "$BASE/install.out"
for i in $(seq 300); do [ -f "$FLURRY_HOME/serve.json" ] && break; sleep 0.2; done
"$PYTHON" -c "import httpx, sys; print(httpx.get(sys.argv[1], timeout=30).text)" \\
    "http://127.0.0.1:$PORT/.well-known/did.json" > "$BASE/did.json"
"$PYTHON" -m node.cli service status --json > "$BASE/status.json"
"$PYTHON" -m node.cli service uninstall > "$BASE/uninstall.out"
systemctl --user show flurry.service --property=ActiveState > "$BASE/after.txt"
"""


@pytest.mark.skipif(
    os.geteuid() != 0
    or shutil.which("unshare") is None
    or not os.path.exists("/lib/systemd/systemd")
    or os.path.exists("/run/systemd/system"),
    reason="needs root, unshare and systemd's binaries on a box not booted with systemd (where "
    "a private user manager can be started without touching the real one)",
)
def test_the_node_runs_as_a_real_systemd_user_service(cli, tmp_path):
    """The real systemd user manager, started in a private mount namespace (this box has the
    binaries but was not booted with systemd): `flurry service install` with a passphrase file
    starts the node under the hardened unit, it answers over HTTP, logs JSON lines, and
    `uninstall` stops it."""
    # Not under /tmp (the unit's PrivateTmp hides it) nor /dev/shm (systemd v252 builds the
    # credentials there, covering it for a moment): under the home, as a real node lives.
    base = Path.home() / ".cache" / f"flurry-test-service-{os.getpid()}-{time.monotonic_ns()}"
    base.mkdir(parents=True)
    try:
        home = base / "home"
        env = {
            **cli.env,
            "FLURRY_HOME": str(home),
            "XDG_CONFIG_HOME": str(base / "config"),
            "BASE": str(base),
            "PORT": str(free_port()),
            "PYTHON": sys.executable,
            "PYTHONPATH": os.environ.get("PYTHONPATH") or str(Path(__file__).parent.parent),
        }
        env.pop("FLURRY_RUNTIME_DIR")  # the fixture's folder is under /dev/shm: see above
        (base / "passphrase").write_text(PASSPHRASE + "\n")
        (base / "passphrase").chmod(0o600)
        cli("init", FLURRY_HOME=str(home))
        # The journal is not running here: the service's stderr goes to a file beside it.
        drop_in = base / "config" / "systemd" / "user" / "flurry.service.d"
        drop_in.mkdir(parents=True)
        (drop_in / "stderr.conf").write_text(f"[Service]\nStandardError=append:{base}/stderr\n")
        # A pid namespace too: whatever happens, every process of the test ends with it.
        run = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc"]
            + ["sh", "-c", E2E_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        logged = (base / "stderr").read_text() if (base / "stderr").exists() else ""
        assert run.returncode == 0, run.stderr + logged
        keys = Keyring.unlock(home / "keyring.json", PASSPHRASE)
        assert json.loads((base / "did.json").read_text())["id"] == keys.node_did
        status = json.loads((base / "status.json").read_text())
        assert (status["ActiveState"], status["UnitFileState"]) == ("active", "enabled")
        assert status["serving"] == f"http://127.0.0.1:{env['PORT']}"
        entries = [json.loads(line) for line in logged.splitlines()]
        assert [e["event"] for e in entries] == ["serving", "stopped"], logged
        assert "stopped and disabled flurry.service" in (base / "uninstall.out").read_text()
        assert (base / "after.txt").read_text().strip() == "ActiveState=inactive"
        assert not (base / "config" / "systemd" / "user" / "flurry.service").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- the logs never hold the owner's text -------------------------------------------------------


def test_an_exception_is_logged_by_its_type_and_stack_never_its_message():
    root = logging.getLogger()
    kept = (list(root.handlers), root.level)
    for log_format in logs.FORMATS:
        stream = io.StringIO()
        logs.configure(log_format, stream)
        try:
            try:
                raise KeyError(CANARY)
            except KeyError as e:
                raise ExceptionGroup("answer failed", [ValueError(f"chunk: {CANARY}")]) from e
        except ExceptionGroup:
            logging.getLogger("node.a2a").exception("a2a task t1: the answer failed")
        logged = stream.getvalue()
        assert CANARY not in logged
        for kind in ("KeyError", "ExceptionGroup", "ValueError", "test_service.py"):
            assert kind in logged, (log_format, logged)
    root.handlers[:] = kept[0]
    root.setLevel(kept[1])
    logging.captureWarnings(False)


def _stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)


def test_the_canary_never_reaches_the_log(flurry, tmp_path):
    """The owner's words go through the real app over HTTP as a document (its text and its
    file name), a question, a chat message, a conversation's title, a query string and broken
    requests; stderr of `flurry serve` holds none of it, in either format."""
    flurry("init")
    app_token = flurry("tokens", "create", "canary-app").stdout.strip()
    notes = tmp_path / f"notes-{CANARY}"
    notes.mkdir()
    (notes / f"{CANARY}.md").write_text(f"# Vault code\n\nThe vault code is {CANARY} since May.\n")
    for log_format in logs.FORMATS:
        _serve_the_canary(flurry, tmp_path, notes, app_token, log_format)


def _serve_the_canary(flurry, tmp_path: Path, notes: Path, app_token: str, log_format: str) -> None:
    port = free_port()
    stderr_path = tmp_path / f"serve-{log_format}.stderr"
    with open(stderr_path, "w") as stderr:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node.cli",
                "serve",
                "--port",
                str(port),
                "--log-format",
                log_format,
            ],
            env=flurry.env,
            cwd=flurry.cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 120
        while not (flurry.home / "serve.json").exists():
            assert server.poll() is None and time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        keys = Keyring.unlock(flurry.home / "keyring.json", PASSPHRASE)
        with signed_client(
            keys.owner_key, verification_method_id(keys.owner_did), base_url=url, timeout=300
        ) as owner:
            added = owner.post("/api/owner/documents/add", json={"path": str(notes)})
            assert added.status_code == 200 and '"summary"' in added.text, added.text
            found = owner.post("/api/owner/documents/search", json={"query": f"What is {CANARY}?"})
            assert CANARY in found.text  # the canary did go through the node
            asked = owner.post("/api/ask", json={"question": f"What is the vault code {CANARY}?"})
            assert asked.status_code == 200, asked.text
            chat = httpx.post(
                f"{url}/v1/chat/completions",
                headers={"authorization": f"Bearer {app_token}"},
                timeout=300,
                json={
                    "model": "flurry",
                    "messages": [{"role": "user", "content": f"Say {CANARY}"}],
                    "max_tokens": 8,
                },
            )
            assert chat.status_code == 200, chat.text
            titled = owner.post("/api/owner/conversations", json={"title": CANARY})
            assert titled.status_code == 200, titled.text
            assert owner.get(f"/api/owner/documents?q={CANARY}").status_code == 200
            assert (
                owner.post("/api/ask", content=f'{{"question": "{CANARY}'.encode()).status_code
                == 400
            )
            # A2A params the SDK cannot parse: it logs the parse error, whose message quotes the
            # value; the log keeps the error's type and stack only.
            broken = owner.post(
                "/a2a",
                headers={"A2A-Version": "1.0"},
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "SendMessage",
                    "params": {
                        "message": {
                            "messageId": "m-1",
                            "role": "ROLE_USER",
                            "parts": CANARY,  # not a list: the parse error quotes it
                        }
                    },
                },
            )
            assert broken.status_code == 200 and broken.json()["error"]["code"] == -32602
            assert CANARY in broken.text  # the SDK tells the caller what it refused
            missing = owner.post("/api/owner/documents/chunk", json={"path": CANARY, "chunk": 0})
            assert (
                missing.status_code == 404 and CANARY in missing.text
            )  # told the owner, not the log
        assert httpx.get(f"{url}/{CANARY}?q={CANARY}").status_code in (401, 404)
        with socket.create_connection(("127.0.0.1", port)) as raw:  # not HTTP at all
            raw.sendall(f"{CANARY} {CANARY}\r\n\r\n".encode())
            raw.recv(1024)
    finally:
        _stop(server)
    logged = stderr_path.read_text()
    assert CANARY not in logged, logged
    lines = [line for line in logged.splitlines() if line.strip()]
    if log_format == "json":
        entries = [json.loads(line) for line in lines]  # every line is one JSON object
        assert all(set(e) >= {"time", "level", "event", "message", "fields"} for e in entries)
        events = {e["event"]: e for e in entries}
        sdk = [e for e in entries if e["event"] == "a2a.server.routes.jsonrpc_dispatcher"]
        # The SDK's parse error, by its type and stack; then its line about the refusal, with
        # its values (the parse error quoting the request) withheld.
        assert sdk[0]["level"] == "error" and sdk[0]["traceback"][-1].endswith(logs.WITHHELD)
        assert sdk[1]["message"] == "Request Error (ID: …): Code=…, Message='…'…", sdk
        assert events["serving"]["fields"]["url"] == url
        assert events["serving"]["fields"]["node_did"] == keys.node_did
        assert "stopped" in events
    else:
        assert any("flurry.serving: flurry serves " + url in line for line in lines), logged
        assert any("flurry.stopped" in line for line in lines), logged
