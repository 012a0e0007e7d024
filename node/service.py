"""`flurry serve` as a systemd user service: the unit, installing it, its state and its logs.

The unit lives at ``$XDG_CONFIG_HOME/systemd/user/flurry.service`` (``~/.config`` without
it), runs ``python -m node.cli serve`` for one home (FLURRY_HOME baked in) and starts with the
user's service manager: at login, or at boot once ``loginctl enable-linger`` is on.

The passphrase, one of three ways, said plainly to the owner:

- ``none`` (the default): the unit holds no secret; the node starts locked and waits for
  `flurry unlock`.
- ``file PATH``: a file only its owner can read (refused otherwise), handed to the service as a
  systemd credential (``LoadCredential=``): the secret sits on disk in plaintext, guarded by
  file permissions alone.
- ``encrypted``: ``systemd-creds --user encrypt`` seals it under the machine's credential key
  (the TPM where there is one); the service manager decrypts it at start
  (``LoadCredentialEncrypted=``). User services can do that from systemd 258 on; before, the
  install refuses and says so.

Either credential reaches serve as ``--passphrase-file %d/passphrase`` (``%d``: the service's
private credentials folder, ``$CREDENTIALS_DIRECTORY``).

Where no user systemd answers (a container, a box without systemd, a session without a user
manager), nothing is written: the owner gets the unit, the commands that would install it,
and a plain ``nohup`` / cron ``@reboot`` line instead, with the reason.

``unit_text`` is a pure function of its inputs; everything that runs ``systemctl``,
``journalctl`` or ``systemd-creds`` goes through ``Systemd``, found on PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import NodeError

UNIT_NAME = "flurry.service"
CREDENTIAL_NAME = "passphrase"
# User services decrypt per-user encrypted credentials from systemd 258 on (systemd PR 35536;
# `systemd-creds --user` itself came in 256).
ENCRYPTED_CREDENTIALS_SINCE = 258
CREDENTIALS = ("none", "file", "encrypted")
# Variables of the installing shell that change what the node uses, baked into the unit when
# set (PYTHONPATH: a node run from a checkout runs the same code as a service).
BAKED_ENVIRONMENT = (
    "FLURRY_MODELS",
    "FLURRY_RUNTIME_DIR",
    "FLURRY_THREADS",
    "FLURRY_HF_ENDPOINT",
    "PYTHONPATH",
)


class ServiceError(NodeError):
    """The service cannot be installed, removed or read as asked; the message says why."""


@dataclass(frozen=True)
class Credential:
    """How the service gets the passphrase: ``kind`` is one of CREDENTIALS; ``path`` is the
    plaintext file (``file``) or the sealed one ``systemd-creds`` wrote (``encrypted``)."""

    kind: str = "none"
    path: Path | None = None


# --- the unit -------------------------------------------------------------------------------


def unit_folder(environ: Mapping[str, str] = os.environ) -> Path:
    config = environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec: a relative XDG_CONFIG_HOME is invalid and is ignored.
    base = Path(config) if config and os.path.isabs(config) else Path.home() / ".config"
    return base / "systemd" / "user"


def unit_path(environ: Mapping[str, str] = os.environ) -> Path:
    return unit_folder(environ) / UNIT_NAME


def encrypted_credential_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where `install --credential encrypted` keeps the sealed passphrase (beside the config,
    not in the home: a backup of the home is restored on other boxes, whose key cannot open it)."""
    return unit_folder(environ).parent.parent / "flurry" / "passphrase.cred"


def _unit_value(text: str) -> str:
    """``text`` as one word of a unit file setting: quoted, with systemd's specifier ``%`` and
    variable ``$`` escaped, so a path is taken exactly as it is."""
    if any(ord(c) < 32 for c in text):
        raise ServiceError(f"{text!r} holds a control character: a unit file cannot name it")
    if re.fullmatch(r"[\w./:@+=,-]+", text):
        return text  # nothing systemd would read otherwise: no quotes needed
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + escaped.replace("$", "$$") + '"'


def _environment_value(name: str, value: str) -> str:
    # Environment= expands specifiers but not variables: "$" stays as it is there.
    if any(ord(c) < 32 for c in value):
        raise ServiceError(f"{name}={value!r} holds a control character: a unit cannot carry it")
    text = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}"'


def serve_arguments(passphrase_file: Path | None, serve_options: Sequence[str] = ()) -> list[str]:
    """The `flurry` arguments the plain (systemd-less) command runs."""
    args = [] if passphrase_file is None else ["--passphrase-file", str(passphrase_file)]
    return [*args, "serve", "--log-format", "json", *serve_options]


def unit_text(
    *,
    home: Path,
    python: str,
    credential: Credential = Credential(),
    environment: Mapping[str, str] | None = None,
    writable: Sequence[Path] = (),
    serve_options: Sequence[str] = (),
) -> str:
    """The unit file that runs `flurry serve` for ``home`` with ``python``. ``environment``:
    more variables for the node (FLURRY_HOME is always set); ``writable``: folders besides the
    home the node writes to (a models folder elsewhere, a backup destination);
    ``serve_options``: more `flurry serve` options (``--port 9000``)."""
    if credential.kind not in CREDENTIALS:
        raise ServiceError(
            f"unknown credential {credential.kind!r}: one of {', '.join(CREDENTIALS)}"
        )
    if credential.kind != "none" and credential.path is None:
        raise ServiceError(f"--credential {credential.kind} needs its file")
    env = {"FLURRY_HOME": str(home), **(environment or {})}
    words = [_unit_value(python), "-m", "node.cli"]
    if credential.kind != "none":  # %d: the service's private credentials folder
        words += ["--passphrase-file", f"%d/{CREDENTIAL_NAME}"]
    serve = ["serve", "--log-format", "json", *serve_options]
    exec_start = " ".join([*words, *(_unit_value(w) for w in serve)])
    if credential.kind == "file":
        credential_lines = [
            "# The passphrase file, readable only by its owner, handed over as a credential: its",
            "# plaintext sits on disk, guarded by file permissions alone.",
            f"LoadCredential={CREDENTIAL_NAME}:{_credential_path(credential.path)}",
        ]
    elif credential.kind == "encrypted":
        credential_lines = [
            "# Sealed by `systemd-creds --user encrypt` under this machine's credential key.",
            f"LoadCredentialEncrypted={CREDENTIAL_NAME}:{_credential_path(credential.path)}",
        ]
    else:
        credential_lines = [
            "# No passphrase here: the node starts locked and waits for `flurry unlock`."
        ]
    paths = [home, *writable]
    lines = [
        "# Written by `flurry service install`; `flurry service uninstall` removes it.",
        "[Unit]",
        f"Description=flurry personal AI node ({_specifiers(str(home))})",
        # A wrong passphrase or a broken home fails at once: stop retrying after five in 5 min.
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=simple",
        *(f"Environment={_environment_value(k, v)}" for k, v in env.items()),
        f"ExecStart={exec_start}",
        *credential_lines,
        "Restart=on-failure",
        "RestartSec=5",
        # Stopping saves the sealed index snapshot first: give it time.
        "TimeoutStopSec=120",
        "",
        "# Hardening, as far as it leaves serve whole.",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "ReadWritePaths=" + " ".join(_unit_path_word(p) for p in paths),
        # XDG_RUNTIME_DIR: the unlock agent's socket; the indexes where /dev/shm is missing.
        "ReadWritePaths=-%t",
        "ProtectKernelModules=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        # Nostr relays and peers (inet), the skills' broker (unix), interface lookups (netlink).
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "# Left out on purpose, each would break a part of serve:",
        "# - RestrictNamespaces=: the skills' sandbox (skills/sandbox.py) unshares user, network,",
        "#   mount and pid namespaces for each skill.",
        "# - SystemCallFilter=@system-service: it denies mount(2) (the sandbox hides /run under a",
        "#   tmpfs) and Landlock's syscalls.",
        "# - ProtectControlGroups=: skills/cgroup.py makes a pids cgroup per skill where allowed.",
        "# - PrivateDevices=, ProtectClock= (a device allow-list): llama.cpp's GPU offload opens",
        "#   /dev/nvidia*, /dev/dri, /dev/kfd.",
        "# - MemoryDenyWriteExecute=: ctypes callbacks (llama.cpp's bindings) need W+X memory.",
        "# - ProtectKernelTunables=, ProtectKernelLogs=: they remount /proc and /sys, which fails",
        "#   (226/NAMESPACE) in containers that mask those already; and a user's process cannot",
        "#   write the kernel's tunables or read its log anyway.",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def _unit_path_word(path: Path | None) -> str:
    return _unit_value(str(path))


def _credential_path(path: Path | None) -> str:
    # systemd takes what follows "ID:" as it is, unquoted: only its specifiers are escaped.
    text = str(path)
    if not os.path.isabs(text) or any(ord(c) < 32 for c in text) or text != text.strip():
        raise ServiceError(f"{text!r}: a credential needs an absolute path a unit file can name")
    return _specifiers(text)


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")


def read_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]} (keys repeat: Environment=, ReadWritePaths=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def installed_home(text: str) -> str | None:
    """The FLURRY_HOME an installed unit serves."""
    for key, value in read_unit(text).get("Service", []):
        if key == "Environment":
            for word in shlex.split(value.replace("%%", "%")):
                name, _, val = word.partition("=")
                if name == "FLURRY_HOME":
                    return val
    return None


# --- the plain equivalent, for a box without a user systemd ---------------------------------


def plain_command(
    home: Path,
    python: str,
    credential: Credential,
    environment: Mapping[str, str],
    serve_options: Sequence[str] = (),
) -> str:
    """The shell command that runs the same node without systemd, logging to <home>/serve.log."""
    env = {"FLURRY_HOME": str(home), **environment}
    words = ["env", *(f"{k}={v}" for k, v in env.items()), python, "-m", "node.cli"]
    words += serve_arguments(credential.path if credential.kind == "file" else None, serve_options)
    log = home / "serve.log"
    return " ".join(shlex.quote(w) for w in words) + f" >> {shlex.quote(str(log))} 2>&1"


def cron_line(command: str) -> str:
    # cron turns an unescaped % into a newline.
    return "@reboot " + command.replace("%", "\\%")


# --- talking to systemd ---------------------------------------------------------------------


@dataclass
class Systemd:
    """The user's service manager, as far as it answers. ``why``: why it does not."""

    reachable: bool
    version: int | None = None
    why: str = ""
    systemctl: str | None = None
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def find(cls, environ: Mapping[str, str] | None = None) -> Systemd:
        environ = dict(os.environ if environ is None else environ)
        systemctl = shutil.which("systemctl", path=environ.get("PATH"))
        if systemctl is None:
            return cls(
                False, why="there is no systemctl on this system (no systemd)", environ=environ
            )
        try:
            run = subprocess.run(
                [systemctl, "--user", "show", "--property=Version", "--value"],
                capture_output=True,
                text=True,
                timeout=15,
                env=environ,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return cls(False, why=f"systemctl --user did not answer ({e})", environ=environ)
        if run.returncode != 0:
            said = (run.stderr.strip().splitlines() or ["no reason given"])[-1]
            return cls(
                False,
                why=f"no user systemd answers ({said}): as in a container, or a session without a "
                "user service manager",
                systemctl=systemctl,
                environ=environ,
            )
        match = re.match(r"\s*(\d+)", run.stdout)
        return cls(True, int(match.group(1)) if match else None, "", systemctl, environ)

    def _tool(self, name: str) -> str:
        found = shutil.which(name, path=self.environ.get("PATH"))
        if found is None:
            raise ServiceError(f"{name} is not on PATH")
        return found

    def run(self, tool: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self._tool(tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            input=input,
            env=self.environ,
        )

    def systemctl_user(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("systemctl", "--user", *args)


def _failed(run: subprocess.CompletedProcess, what: str) -> ServiceError:
    said = (run.stderr or run.stdout).strip()
    return ServiceError(
        f"{what} failed (exit status {run.returncode}): {said or 'no reason given'}"
    )


# --- the passphrase -------------------------------------------------------------------------


def check_passphrase_file(path: Path) -> None:
    """Refuse a passphrase file anyone but its owner (this user) could read or change."""
    try:
        st = path.stat()
    except OSError as e:
        raise ServiceError(f"cannot read the passphrase file {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ServiceError(f"{path} is not a regular file")
    if st.st_uid != os.getuid():
        raise ServiceError(f"{path} belongs to user id {st.st_uid}, not to you: refusing it")
    if st.st_mode & 0o077:
        raise ServiceError(
            f"{path} can be read or changed by others (mode {stat.S_IMODE(st.st_mode):04o}): "
            f"run `chmod 600 {shlex.quote(str(path))}` first; a passphrase file must be yours alone"
        )


def read_passphrase_file(path: Path) -> str:
    check_passphrase_file(path)
    # As `--passphrase-file` reads it (node.cli.common): the line ending is not part of it.
    return path.read_text(encoding="utf-8").rstrip("\r\n")


def require_encrypted_credentials(systemd: Systemd) -> None:
    if systemd.version is None or systemd.version < ENCRYPTED_CREDENTIALS_SINCE:
        raise ServiceError(
            f"this systemd ({systemd.version or 'version unknown'}) cannot decrypt credentials for "
            f"a user service (systemd {ENCRYPTED_CREDENTIALS_SINCE} can): use `--credential file "
            "PATH` (a file only you can read) or no credential (the node waits for `flurry unlock`)"
        )


def encrypt_passphrase(systemd: Systemd, passphrase: str, target: Path) -> None:
    """Seal ``passphrase`` for the user's services with systemd-creds; it goes in on stdin,
    never on a command line (which any user can read in /proc)."""
    require_encrypted_credentials(systemd)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_suffix(".tmp")
    run = systemd.run(
        "systemd-creds",
        "--user",
        f"--name={CREDENTIAL_NAME}",
        "encrypt",
        "-",
        str(tmp),
        input=passphrase,
    )
    if run.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise _failed(run, "systemd-creds encrypt")
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


# --- install, uninstall, status, logs -------------------------------------------------------


@dataclass
class Plan:
    """What `flurry service install` does or, without a user systemd, tells the owner to do."""

    home: str
    unit: str
    unit_path: Path
    plain: str  # the nohup / cron command
    credential: Credential
    systemd: Systemd
    done: list[str] = field(default_factory=list)  # the commands that ran


def python_command() -> str:
    """The interpreter the unit runs: this one, which has flurry installed."""
    return sys.executable


def plan(
    home: Path,
    credential: Credential,
    systemd: Systemd,
    writable: Sequence[Path] = (),
    models: Path | None = None,
    serve_options: Sequence[str] = (),
) -> Plan:
    environ = systemd.environ
    environment = {k: environ[k] for k in BAKED_ENVIRONMENT if environ.get(k)}
    extra = list(writable)
    for name in ("FLURRY_MODELS", "FLURRY_RUNTIME_DIR"):
        if environment.get(name):
            extra.append(Path(environment[name]))
    if models is not None and not models.is_relative_to(home) and models not in extra:
        extra.append(models)
    python = python_command()
    unit = unit_text(
        home=home,
        python=python,
        credential=credential,
        environment=environment,
        writable=extra,
        serve_options=serve_options,
    )
    plain = plain_command(home, python, credential, environment, serve_options)
    return Plan(str(home), unit, unit_path(environ), plain, credential, systemd)


def install(p: Plan, passphrase: str | None = None) -> Plan:
    """Write the unit (and the sealed credential), reload, enable and start it. Needs a
    reachable user systemd: without one the caller shows ``p`` instead."""
    if not p.systemd.reachable:
        raise ServiceError(f"cannot install a systemd service: {p.systemd.why}")
    if p.unit_path.exists():
        serving = installed_home(p.unit_path.read_text())
        if serving != p.home:
            raise ServiceError(
                f"{p.unit_path} already runs the node at {serving}: one home per user service; "
                "`flurry service uninstall` it first (that home stays as it is)"
            )
    if p.credential.kind == "encrypted":
        assert passphrase is not None and p.credential.path is not None
        encrypt_passphrase(p.systemd, passphrase, p.credential.path)
    p.unit_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.unit_path.with_suffix(".tmp")
    tmp.write_text(p.unit)
    os.replace(tmp, p.unit_path)
    for args in (["daemon-reload"], ["enable", "--now", UNIT_NAME]):
        run = p.systemd.systemctl_user(*args)
        p.done.append("systemctl --user " + " ".join(args))
        if run.returncode != 0:
            raise _failed(run, f"systemctl --user {' '.join(args)}")
    return p


def uninstall(systemd: Systemd) -> list[str]:
    """Stop and disable the service, remove its unit and sealed credential. What was done, one
    line each."""
    done = []
    path = unit_path(systemd.environ)
    if systemd.reachable:
        run = systemd.systemctl_user("disable", "--now", UNIT_NAME)
        if run.returncode == 0:
            done.append(f"stopped and disabled {UNIT_NAME}")
        elif path.exists():  # installed but refused: say why rather than leave it half done
            raise _failed(run, f"systemctl --user disable --now {UNIT_NAME}")
    for file in (path, encrypted_credential_path(systemd.environ)):
        if file.exists():
            file.unlink()
            done.append(f"removed {file}")
    if systemd.reachable and done:
        run = systemd.systemctl_user("daemon-reload")
        if run.returncode != 0:
            raise _failed(run, "systemctl --user daemon-reload")
    return done


STATUS_PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID", "Result")


def state(systemd: Systemd) -> dict:
    """The service as systemd sees it, for `flurry service status` and `flurry doctor`."""
    path = unit_path(systemd.environ)
    info: dict = {
        "unit": str(path),
        "installed": path.exists(),
        "home": installed_home(path.read_text()) if path.exists() else None,
        "systemd": systemd.reachable,
        "systemd_version": systemd.version,
    }
    if not systemd.reachable:
        info["why"] = systemd.why
        return info
    run = systemd.systemctl_user("show", UNIT_NAME, "--property=" + ",".join(STATUS_PROPERTIES))
    if run.returncode != 0:
        info["why"] = _failed(run, "systemctl --user show").args[0]
        return info
    for line in run.stdout.splitlines():
        key, _, value = line.partition("=")
        if key in STATUS_PROPERTIES:
            info[key] = value
    return info


def linger_enabled(user: str) -> bool | None:
    """Whether the user's services start at boot without a login (None: cannot tell)."""
    folder = Path("/var/lib/systemd/linger")
    return (folder / user).exists() if folder.is_dir() else None


def journal_command(lines: int, follow: bool) -> list[str]:
    args = ["--user", "--unit", UNIT_NAME, "--no-pager", "--output", "cat", "--lines", str(lines)]
    return [*args, "--follow"] if follow else args
