"""Confine a managed skill's process before any of its code is imported (Linux only).

Called once by ``skills.runner``, single-threaded, right before the skill is imported:

- **no_new_privs** first: nothing the skill executes can gain privileges (and Landlock needs it).
- **Network**: a new user + network namespace. The skill's network has only a loopback that is
  down, so TCP and UDP both fail ("Network is unreachable"). Pathname Unix sockets still connect
  (they are found through the filesystem, not the network namespace): that is how the node's
  broker is reached. Landlock's TCP bind/connect denial (ABI 4+) is a second layer, and the one
  left where user namespaces are not allowed.
- **Filesystem**: Landlock. Read and execute only beneath the Python installation, the paths
  Python imports from, the system's shared libraries and a few harmless files; read and write
  only in the skill's private working directory. Everything else (the node's home with the vault
  and keyring, the owner's files, /proc of other processes) fails with PermissionError.
- **Scopes** (Landlock ABI 6+): no signals to processes outside the sandbox (the node), no
  abstract Unix sockets outside it.
- **Service sockets**: Landlock (up to ABI 7) does not govern connecting to a pathname Unix
  socket, and the owner's session bus, ssh/gpg agents, docker and X11 listen on well-known ones
  (/run/user/UID/bus, /run/docker.sock, /tmp/.X11-unix/X0): a skill that reached the session
  bus could ask systemd to start an unconfined process. So in a new mount namespace an empty,
  read-only tmpfs covers /run and those /tmp folders. The node's broker socket must therefore
  live elsewhere (the node's home, or the host's private folder for the skill).

Each step is best effort, as the kernel documentation advises: an older kernel enforces what it
knows, and ``Confinement`` says exactly what applied and, for what did not, why. The runner
reports it; the node shows it to the owner. Nothing here stops the skill from running.

This module owns the orchestration (``confine()`` and what it reports, ``Confinement``), the
resource limits (``Limits``), the namespaces and mounts, and the paths a confined interpreter
needs. The Landlock syscalls themselves are ``skills.landlock``'s; the pids cgroup that caps a
skill's processes is ``skills.cgroup``'s.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from skills.landlock import check, landlock_abi, libc, restrict

_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


# --- what applied ------------------------------------------------------------------------------


@dataclass
class Confinement:
    """What the sandbox enforces in this process; ``missing`` says why anything did not apply."""

    filesystem: str | None = None  # e.g. "landlock ABI 7"
    network: list[str] = field(default_factory=list)  # e.g. ["netns", "landlock TCP"]
    scopes: str | None = None  # e.g. "signals, abstract unix sockets"
    hidden: list[str] = field(
        default_factory=list
    )  # folders of service sockets covered, e.g. ["/run"]
    missing: list[str] = field(default_factory=list)
    # What ends the skill's processes at stop: "pid namespace" (all of them) or "process group".
    processes: str | None = None
    limits: dict = field(default_factory=dict)  # the rlimits that applied, e.g. {"memory_mb": 1024}
    user_namespace: bool = False

    @property
    def applied(self) -> bool:
        return bool(self.filesystem or self.network)

    def summary(self) -> str:
        """One line for the owner: what protects them, or NONE and why."""
        if not self.applied:
            return "NONE — " + ("; ".join(self.missing) or "not applied")
        parts = []
        if self.filesystem:
            parts.append(f"filesystem ({self.filesystem})")
        if self.network:
            parts.append(f"network ({', '.join(self.network)})")
        if self.scopes:
            parts.append(f"scoped ({self.scopes})")
        if self.hidden:
            parts.append(f"hidden ({', '.join(self.hidden)})")
        if self.processes:
            parts.append(f"stopped with its {self.processes}")
        if self.limits:
            parts.append("limits (" + ", ".join(f"{k} {v}" for k, v in self.limits.items()) + ")")
        line = ", ".join(parts)
        return line + (f"; NOT protected: {'; '.join(self.missing)}" if self.missing else "")

    def to_dict(self) -> dict:
        return {
            "filesystem": self.filesystem,
            "network": list(self.network),
            "scopes": self.scopes,
            "hidden": list(self.hidden),
            "missing": list(self.missing),
            "processes": self.processes,
            "limits": dict(self.limits),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Confinement:
        return cls(
            d.get("filesystem"),
            list(d.get("network") or []),
            d.get("scopes"),
            list(d.get("hidden") or []),
            list(d.get("missing") or []),
            d.get("processes"),
            dict(d.get("limits") or {}),
        )


# --- resource limits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits of one skill process (rlimits, inherited by every process it starts).

    Per process, not per tree: ``memory_mb`` bounds each process's address space, so a skill's
    ``processes`` can hold at most that many times it; only a cgroup could bound the sum.
    ``cpu_seconds`` counts over the process's life (the skill is killed with SIGXCPU and
    restarts on its next call). ``processes`` counts processes of the skill's user in its own
    user namespace; the kernel never applies it to root, so a node running as root has no cap
    on a skill's processes, and says so."""

    memory_mb: int = 1024
    processes: int = 32
    cpu_seconds: int = 600
    file_mb: int = 64
    open_files: int = 256

    # The most a manifest may ask for, unless the owner set other caps.
    @classmethod
    def caps(cls) -> Limits:
        return cls(memory_mb=4096, processes=128, cpu_seconds=3600, file_mb=1024, open_files=1024)

    def within(self, asked: dict | None, caps: Limits | None = None) -> Limits:
        """These defaults, with what ``asked`` (a manifest's ``limits``) raises or lowers, each at
        most the owner's ``caps``."""
        caps = caps or Limits.caps()
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name, value in (asked or {}).items():
            values[name] = min(int(value), getattr(caps, name))
        return Limits(**values)

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def from_json(cls, text: str | None) -> Limits:
        return cls(**json.loads(text)) if text else cls()

    def apply(self, user_namespace: bool, cgroup: bool = False) -> tuple[dict, list[str]]:
        """Set the rlimits on this process: (what applied, what did not and why). ``cgroup``: the
        process already sits in a pids cgroup capped at ``processes``."""
        import resource

        mib = 1024 * 1024
        wanted = {
            "memory_mb": (resource.RLIMIT_AS, self.memory_mb * mib),
            "cpu_seconds": (resource.RLIMIT_CPU, self.cpu_seconds),
            "file_mb": (resource.RLIMIT_FSIZE, self.file_mb * mib),
            "open_files": (resource.RLIMIT_NOFILE, self.open_files),
        }
        applied, missing = {}, []
        # Outside a user namespace of its own, RLIMIT_NPROC would count every process of the
        # owner's account, and a busy desktop would leave the skill none.
        if user_namespace and os.geteuid() != 0:
            wanted["processes"] = (resource.RLIMIT_NPROC, self.processes)
        elif cgroup:
            applied["processes"] = self.processes
        else:
            why = (
                "the kernel does not apply it to root"
                if user_namespace
                else "no user namespace of its own"
            )
            missing.append(f"no cap on processes ({why}, and no pids cgroup)")
        for name, (which, value) in wanted.items():
            try:
                # Soft and hard alike: the skill may lower them further, never raise them.
                resource.setrlimit(which, (value, value))
                applied[name] = getattr(self, name)
            except (OSError, ValueError) as e:
                missing.append(f"no {name} limit ({e})")
        return applied, missing


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies."""
    import signal

    libc().prctl(
        _PR_SET_PDEATHSIG,
        ctypes.c_ulong(signal.SIGKILL),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )


# --- paths the interpreter needs -------------------------------------------------------------

# Shared libraries that extension modules load after we are confined, and a few read-only
# system files Python's stdlib opens (time zones, MIME types, the loader's cache). None holds
# anything of the owner's.
_SYSTEM_READABLE = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/local/lib",
    "/usr/share/zoneinfo",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/mime.types",
    # the distribution's name, which pip reads when it builds a project folder
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/lsb-release",
)


def interpreter_paths(startup_cwd: str | None = None) -> list[str]:
    """Where this interpreter reads code from: its installation and the import path as it is now.

    ``startup_cwd`` (what ``python -m`` puts first on sys.path; the runner, started isolated,
    has none) is left out: it is wherever the process was started, not code. So is any entry
    that is the owner's home or above it, which would expose everything beneath."""
    homes = {Path(h).resolve() for h in (os.environ.get("HOME"), _passwd_home()) if h}
    found: list[str] = []
    candidates = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        *sys.path,
    ]
    for entry in candidates:
        if not entry or (startup_cwd and os.path.realpath(entry) == os.path.realpath(startup_cwd)):
            continue
        path = Path(entry).resolve()
        if path == Path("/") or any(path == home or path in home.parents for home in homes):
            continue
        if path.exists() and str(path) not in found:
            found.append(str(path))
    # A virtualenv's interpreter reads pyvenv.cfg beside or above its executable at start-up
    # (site.venv): a child it starts inside the sandbox (pip building a skill) needs to read it.
    bin_folder = os.path.dirname(os.path.abspath(sys.executable))
    for folder in (bin_folder, os.path.dirname(bin_folder)):
        config = os.path.join(folder, "pyvenv.cfg")
        if os.path.isfile(config) and config not in found:
            found.append(config)
    return found


def _passwd_home() -> str | None:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError):
        return None


# --- applying it -------------------------------------------------------------------------------


def confine(writable: str, readable: list[str]) -> Confinement:
    """Confine this process: read+execute beneath ``readable``, read+write in ``writable``, no
    network. Call it single-threaded (Landlock and unshare apply to the calling thread only)."""
    report = Confinement()
    if sys.platform != "linux":
        report.missing.append(f"no sandbox on {sys.platform} (Linux only)")
        return report
    threads = _thread_count()
    if threads != 1:
        report.missing.append(
            f"not confined: {threads} threads running (the sandbox must apply before any start)"
        )
        return report
    try:
        check(
            libc().prctl(
                _PR_SET_NO_NEW_PRIVS,
                ctypes.c_ulong(1),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
            ),
            "prctl(PR_SET_NO_NEW_PRIVS)",
        )
    except OSError as e:
        report.missing.append(f"no sandbox: {e.strerror}")
        return report

    # Namespaces go first: writing our uid map needs /proc, and mounting is what Landlock then
    # forbids.
    netns_error = None
    try:
        report.user_namespace = _new_namespaces()
        report.network.append("netns")
        report.processes = "pid namespace"
        report.hidden, not_hidden = _hide_service_sockets()
        report.missing += not_hidden
    except OSError as e:
        netns_error = e.strerror
        report.missing.append(
            f"service sockets under /run are reachable (no mount namespace: {e.strerror})"
        )

    abi = 0
    try:
        abi = landlock_abi()
        restrict(abi, writable, [*readable, *_SYSTEM_READABLE])
        report.filesystem = f"landlock ABI {abi}"
    except OSError as e:
        report.missing.append(f"no filesystem sandbox: {e.strerror}")
    tcp_denied = report.filesystem is not None and abi >= 4
    if tcp_denied:
        report.network.append("landlock TCP")
    if netns_error:
        report.missing.append(
            f"no network namespace ({netns_error}): {'UDP is' if tcp_denied else 'TCP and UDP are'} open"
        )
    if report.filesystem and abi >= 6:
        report.scopes = "signals, abstract unix sockets"
    elif report.filesystem:
        report.missing.append(f"signals to the node are not scoped (Landlock ABI {abi} < 6)")
    return report


def _thread_count() -> int:
    # threading.active_count() misses threads a C library started; the kernel does not.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import threading

    return threading.active_count()


_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18
_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
# Where the host's services listen on pathname Unix sockets.
_SERVICE_SOCKETS = ("/run", "/var/run", "/tmp/.X11-unix", "/tmp/.ICE-unix")


def _new_namespaces() -> bool:
    """A network namespace (no network), a mount namespace (to hide service sockets) and a PID
    namespace (for the processes forked from now on: see skills.runner). True if a user namespace
    came with them."""
    uid, gid = os.getuid(), os.getgid()
    # Unprivileged: a user namespace gives us the right to the other namespaces.
    # Privileged (root where user namespaces are refused): those alone.
    if (
        libc().unshare(ctypes.c_int(_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS | _CLONE_NEWPID))
        == 0
    ):
        # Map our own ids onto themselves, so files and getpass look as before; setgroups must be
        # denied before an unprivileged process may write gid_map. Cosmetic: without the map we
        # would merely look like nobody, so a failure here is no reason to give up.
        try:
            for name, text in (
                ("setgroups", "deny"),
                ("uid_map", f"{uid} {uid} 1"),
                ("gid_map", f"{gid} {gid} 1"),
            ):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        except OSError:
            pass
        return True
    first = ctypes.get_errno()
    if libc().unshare(ctypes.c_int(_CLONE_NEWNET | _CLONE_NEWNS | _CLONE_NEWPID)) == 0:
        return False
    raise OSError(first, f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(first)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def c_str(v: str | None) -> bytes | None:
        return v.encode() if v is not None else None

    check(
        libc().mount(
            c_str(source), c_str(target), c_str(fstype), ctypes.c_ulong(flags), c_str(data)
        ),
        f"mount {target}",
    )


def _hide_service_sockets() -> tuple[list[str], list[str]]:
    """Cover the folders of the host's service sockets with an empty read-only tmpfs, in our own
    mount namespace only. Returns (covered, what could not be covered and why)."""
    # First, so nothing we mount propagates back to the host's mount namespace.
    try:
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    except OSError as e:
        return [], [f"service sockets under /run are reachable ({e.strerror})"]
    hidden, missing = [], []
    for folder in _SERVICE_SOCKETS:
        if os.path.islink(folder) or not os.path.isdir(folder):
            continue  # /var/run is usually a link to /run: covered with it
        try:
            _mount(
                "none",
                folder,
                "tmpfs",
                _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                "size=4k,mode=555",
            )
            hidden.append(folder)
        except OSError as e:
            missing.append(f"sockets under {folder} are reachable ({e.strerror})")
    return hidden, missing
