"""A pids cgroup for a skill, where one is writable: made and emptied by the host
(``skills.host``), joined by the runner (``skills.runner``) before it confines itself."""

from __future__ import annotations

import contextlib
import os

CGROUP_ENV = "FLURRY_SKILL_CGROUP"


def pids_cgroup(name: str, limit: int) -> str | None:
    """A new cgroup under this process's own, with the pids controller and ``pids.max`` = limit,
    or None where none may be made here (the usual case for an unprivileged user without a
    delegated cgroup v2). It caps a skill's processes where RLIMIT_NPROC cannot (the node runs
    as root), and it lets ``kill_cgroup`` find every process of the skill, whatever its
    process group or session."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    roots = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):  # cgroup v1
            roots.append(f"/sys/fs/cgroup/pids{path}")
        elif controllers == "" and os.path.exists(
            "/sys/fs/cgroup/cgroup.subtree_control"
        ):  # v2, mounted there
            parent = f"/sys/fs/cgroup{path}"
            try:
                with open(f"{parent}/cgroup.subtree_control") as f:
                    if "pids" in f.read().split():
                        roots.append(parent)
            except OSError:
                pass
    for root in roots:
        folder = os.path.join(root.rstrip("/"), f"flurry-skill-{name}-{os.urandom(4).hex()}")
        try:
            os.mkdir(folder)
        except OSError:
            continue
        try:
            with open(f"{folder}/pids.max", "w") as f:
                f.write(str(limit))
            return folder
        except OSError:
            os.rmdir(folder)
    return None


def join_cgroup(folder: str) -> None:
    """Move this process into ``folder`` (the runner does, before it confines itself)."""
    with open(f"{folder}/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))


def kill_cgroup(folder: str, timeout: float = 5.0) -> None:
    """SIGKILL every process in ``folder`` until it is empty, then remove it."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"{folder}/cgroup.procs") as f:
                pids = [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.rmdir(folder)  # refused while a process (or a zombie not yet reaped) is in it
            return
        except OSError:
            time.sleep(0.02)
