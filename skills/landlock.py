"""Landlock, the kernel's unprivileged access control, through a few ctypes syscalls.

Owns the kernel's interface (include/uapi/linux/landlock.h: syscall numbers, access rights, the
structs), the libc handle and errno check the sandbox's other syscalls share, ``landlock_abi()``
(which version this kernel speaks, or why none) and ``restrict()`` (the one ruleset a skill's
process gets). What to allow, and everything else about confinement, is ``skills.sandbox``'s.

A few ctypes syscalls rather than a PyPI package: the Python bindings on PyPI are pre-releases or
months old with few users, and the ABI is small and stable.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import sys

# --- the kernel's interface (include/uapi/linux/landlock.h) ---------------------------------

# Syscalls added after the 5.1 unification share one number on every architecture but alpha.
_SYS_LANDLOCK = {"create_ruleset": 444, "add_rule": 445, "restrict_self": 446}
_ARCHES = {"x86_64", "aarch64", "arm64", "armv7l", "riscv64", "ppc64le", "s390x"}

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

# Filesystem access rights, and the ABI that introduced each.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2: moving files between directories
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_FS_ABI1 = (1 << 13) - 1  # EXECUTE … MAKE_SYM


def _fs_rights(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


# Rights that make sense on a file (not a directory); the kernel refuses a rule on a file
# that names any other.
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
_READ_EXEC = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
# The private working directory: everything but executing what the skill writes there, and
# making device nodes.
_READ_WRITE = (_FS_ABI1 | FS_REFER | FS_TRUNCATE) & ~(FS_EXECUTE | FS_MAKE_CHAR | FS_MAKE_BLOCK)


class _RulesetAttr(ctypes.Structure):
    # A kernel that knows fewer fields accepts this larger struct as long as they are zero.
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # packed in the kernel's header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = None


def libc():
    """This process's C library, with errno kept (for ``check``)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def check(result: int, what: str) -> int:
    """``result`` of a libc call, or OSError with its errno, saying ``what`` failed."""
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _syscall(name: str, *args) -> int:
    # syscall(2) is variadic and reads each argument as a long: pass every one at full width.
    return check(libc().syscall(ctypes.c_long(_SYS_LANDLOCK[name]), *args), f"landlock_{name}")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; raises OSError saying why there is none."""
    if sys.platform != "linux":
        raise OSError(errno.ENOSYS, f"Landlock is Linux-only; this is {sys.platform}")
    if platform.machine() not in _ARCHES:
        raise OSError(errno.ENOSYS, f"Landlock syscall numbers not known for {platform.machine()}")
    try:
        return _syscall(
            "create_ruleset",
            ctypes.c_void_p(None),
            ctypes.c_size_t(0),
            ctypes.c_uint32(_CREATE_RULESET_VERSION),
        )
    except OSError as e:
        why: dict[int | None, str] = {  # keyed by e.errno, which may be None
            errno.ENOSYS: "this kernel was built without Landlock",
            errno.EOPNOTSUPP: "Landlock is disabled on this kernel (boot with lsm=…,landlock)",
        }
        raise OSError(e.errno, why.get(e.errno, e.strerror)) from None


def restrict(abi: int, writable: str, readable: list[str]) -> None:
    """Restrict this thread for good: read+execute beneath ``readable``, read+write in ``writable``
    (which must exist), /dev/null and /dev/urandom, no TCP (ABI 4+), scoped signals and abstract
    sockets (ABI 6+)."""
    attr = _RulesetAttr(
        handled_access_fs=_fs_rights(abi),
        # Handled with no rule means denied: no TCP bind or connect at all.
        handled_access_net=(NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    ruleset = _syscall(
        "create_ruleset",
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
        ctypes.c_uint32(0),
    )
    try:
        for path in readable:
            _allow(ruleset, path, _READ_EXEC & attr.handled_access_fs)
        for device in ("/dev/null", "/dev/urandom"):
            _allow(ruleset, device, (FS_READ_FILE | FS_WRITE_FILE) & attr.handled_access_fs)
        _allow(ruleset, writable, _READ_WRITE & attr.handled_access_fs, required=True)
        _syscall("restrict_self", ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, rights: int, required: bool = False) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        if required:
            raise
        return  # e.g. no /lib64 on this system: nothing to allow
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        _syscall(
            "add_rule",
            ctypes.c_int(ruleset),
            ctypes.c_int(_RULE_PATH_BENEATH),
            ctypes.byref(rule),
            ctypes.c_uint32(0),
        )
    finally:
        os.close(fd)
