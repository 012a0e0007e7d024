"""`flurry doctor`: what this box has and what the node uses, each line OK, WARN or FAIL with
what to do about it.

It reads nothing sealed, so it runs on a locked node (and beside a running one): the llama.cpp
build, the models folder (sizes and sha256 against the catalog's pins, cached by size and
mtime in ``<home>/model-hashes.json``: hashing gigabytes takes a while), the skills' sandbox (as
a skill's runner would be confined, asked of a runner), the memory-backed folder for the
unlocked indexes, free disk at the home, the clock, the service and the last backup.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.models import CATALOG, HUB_CATALOG, ModelError, sha256_file
from agent.ollama import PREFIX as OLLAMA_PREFIX
from agent.ollama import find_model as find_ollama_model
from node import service as svc
from node.home import Home, HomeError, runtime_dir

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}
GIB = 1024**3
BACKUP_STALE_DAYS = 7
Progress = Callable[[str, int, int], None]  # (file name, bytes hashed, bytes in all)


@dataclass
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""  # what to do, for WARN and FAIL
    data: dict = field(default_factory=dict)

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<15} {self.detail}"
        return text + (f"\n      {'':<15} → {self.fix}" if self.fix else "")

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            **({"data": self.data} if self.data else {}),
        }


@dataclass
class Report:
    home: Path
    checks: list[Check]

    @property
    def worst(self) -> str:
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=OK)

    def summary(self) -> str:
        counts = {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}
        return f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL"

    def to_json(self) -> dict:
        return {
            "home": str(self.home),
            "worst": self.worst,
            "checks": [c.to_json() for c in self.checks],
        }


def run(home: Home, progress: Progress | None = None) -> Report:
    checks = [check_home(home)]
    checks += check_llama()
    checks += check_models(home, progress)
    checks += check_sandbox()
    checks.append(check_runtime(home))
    checks.append(check_disk(home))
    checks.append(check_clock())
    checks.append(check_service(svc.state(svc.Systemd.find())))
    checks.append(check_backup(home))
    return Report(home.root, checks)


# --- the home -------------------------------------------------------------------------------


def check_home(home: Home) -> Check:
    if not home.exists():
        return Check(
            "home", FAIL, f"no node at {home.root}", "run `flurry init` (or set FLURRY_HOME)"
        )
    url = home.running_node()
    return Check(
        "home",
        OK,
        f"{home.root}" + (f", served at {url}" if url else ", not served now"),
        data={"serving": url},
    )


# --- llama.cpp ------------------------------------------------------------------------------

# llama.cpp's name for a feature → the flag /proc/cpuinfo names it by (x86).
_CPU_FLAGS = {"AVX": "avx", "AVX2": "avx2", "FMA": "fma", "F16C": "f16c", "AVX512": "avx512f"}


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def build_features(system_info: str) -> dict[str, bool]:
    """``CPU : SSE3 = 1 | AVX = 1 | …`` (llama_print_system_info) → {"SSE3": True, …}."""
    features = {}
    for part in system_info.replace("CPU :", "|").split("|"):
        name, eq, value = part.partition("=")
        if eq and name.strip():
            features[name.strip()] = value.strip() == "1"
    return features


def check_llama() -> list[Check]:
    try:
        import llama_cpp
    except ImportError as e:
        return [
            Check("llama.cpp", FAIL, f"llama_cpp does not import ({e})", "reinstall flurry-node")
        ]
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    features = build_features(info)
    enabled = [name for name, on in features.items() if on]
    checks = []
    missing = [
        name
        for name, flag in _CPU_FLAGS.items()
        if flag in cpu_flags() and not features.get(name, False)
    ]
    if missing and platform.machine() in ("x86_64", "AMD64"):
        checks.append(
            Check(
                "llama.cpp",
                WARN,
                f"llama-cpp-python {llama_cpp.__version__}, built without "
                f"{', '.join(missing)}, which this CPU has: answers are slower than they could be",
                'rebuild it for this CPU: CMAKE_ARGS="-DGGML_NATIVE=on" pip install '
                f"--force-reinstall --no-cache-dir llama-cpp-python=={llama_cpp.__version__}",
                {"version": llama_cpp.__version__, "features": enabled},
            )
        )
    else:
        # The loader's own decision, not a second reading of the features.
        from agent import llama_loading  # imports llama_cpp: here, once it is known to import

        amx = (
            "; AMX is left unused (ggml's AMX path crashes on some of these CPUs)"
            if llama_loading.cpu_has_amx()
            else ""
        )
        checks.append(
            Check(
                "llama.cpp",
                OK,
                f"llama-cpp-python {llama_cpp.__version__}; CPU features {' '.join(enabled) or 'none'}"
                + amx,
                data={"version": llama_cpp.__version__, "features": enabled},
            )
        )
    checks.append(gpu_check(bool(llama_cpp.llama_supports_gpu_offload()), _gpus()))
    return checks


def _gpus() -> list[str]:
    from agent.recommend import nvidia_gpus

    return [f"{g.name} ({g.free / GIB:.1f} GB free)" for g in nvidia_gpus()]


def gpu_check(offload: bool, gpus: list[str]) -> Check:
    data = {"offload": offload, "gpus": gpus}
    if offload and gpus:
        return Check("gpu", OK, f"layers go to the GPU: {', '.join(gpus)}", data=data)
    if offload:
        return Check(
            "gpu",
            OK,
            "this build can offload to a GPU (nvidia-smi sees no NVIDIA GPU; Metal, Vulkan or "
            "ROCm may still)",
            data=data,
        )
    if gpus:
        return Check(
            "gpu",
            WARN,
            f"{', '.join(gpus)} is here, but this llama.cpp build is CPU-only: the model runs on the CPU",
            'rebuild with CUDA: CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall '
            "--no-cache-dir llama-cpp-python",
            data,
        )
    return Check(
        "gpu", OK, "CPU only: no GPU backend in this build, and no NVIDIA GPU found", data=data
    )


# --- models ---------------------------------------------------------------------------------


def _hash_cache(home: Home) -> Path:
    return home.root / "model-hashes.json"


def file_sha256(path: Path, cache: dict, progress: Progress | None) -> str:
    """The file's sha256, from ``cache`` while its size and mtime are unchanged."""
    st = path.stat()
    key = str(path.resolve())
    kept = cache.get(key)
    if kept and kept.get("size") == st.st_size and kept.get("mtime_ns") == st.st_mtime_ns:
        return str(kept["sha256"])
    digest = sha256_file(
        path, None if progress is None else lambda done: progress(path.name, done, st.st_size)
    )
    cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return digest


def _pins() -> dict[str, tuple[str | None, str | None]]:
    """File name → (catalog name, pinned sha256 or None)."""
    pins: dict[str, tuple[str | None, str | None]] = {
        m.filename: (m.name, m.gguf_sha256) for m in CATALOG.values()
    }
    for hub in HUB_CATALOG.values():
        pins.setdefault(hub.filename, (hub.name, hub.sha256))
    return pins


def _pulled_sha256(path: Path) -> str | None:
    try:
        return json.loads(path.with_name(path.name + ".pull.json").read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None


def check_models(home: Home, progress: Progress | None = None) -> list[Check]:
    folder = home.models
    config = home.load_config() if home.exists() else None
    checks = []
    in_use = {}
    ollama_digests: dict[
        str, str
    ] = {}  # an Ollama blob's file name → the sha256 its manifest gives
    if config is not None:
        for kind, name in (("chat", config.chat_model), ("embedding", config.embedding_model)):
            if name.startswith(OLLAMA_PREFIX):
                try:
                    ollama_model = find_ollama_model(name)
                except ModelError as e:
                    checks.append(
                        Check(f"{kind} model", FAIL, str(e), f"`flurry models use {kind} NAME`")
                    )
                    continue
                path = ollama_model.blob
                ollama_digests[path.name] = ollama_model.sha256
            elif name in CATALOG:
                path = folder / CATALOG[name].filename
            elif name in HUB_CATALOG:
                path = folder / HUB_CATALOG[name].filename
            else:
                path = Path(name).expanduser()
                if "/" not in name and not path.is_file():
                    path = folder / name
            in_use[path.resolve()] = kind
            if not path.is_file():
                if name in CATALOG:
                    checks.append(
                        Check(
                            f"{kind} model",
                            WARN,
                            f"{name} is not fetched yet (it is on first use)",
                            "fetch it now: `flurry models fetch`",
                        )
                    )
                else:
                    checks.append(
                        Check(
                            f"{kind} model",
                            FAIL,
                            f"config.json names {name}, which is not in {folder}",
                            f"`flurry models pull {name}`, or `flurry models use {kind} NAME`",
                        )
                    )
    files = sorted(p for p in folder.glob("*.gguf") if p.is_file()) if folder.is_dir() else []
    for path in in_use:
        if path.is_file() and path not in [f.resolve() for f in files]:
            files.append(path)
    cache_path = _hash_cache(home)
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    pins = _pins()
    for path in files:
        use = in_use.get(path.resolve())
        label = f"{use} model" if use else "model"
        size = path.stat().st_size
        digest = file_sha256(path, cache, progress)
        catalog_name, pinned = pins.get(path.name, (None, None))
        # The doctor reads the whole file anyway: an Ollama blob is checked against its name.
        expected = pinned or _pulled_sha256(path) or ollama_digests.get(path.name)
        data = {"path": str(path), "bytes": size, "sha256": digest, "in_use": use}
        detail = f"{path.name}  {size / 1024**2:.0f} MB  sha256 {digest[:16]}…"
        if expected is None:
            why = "no pin: converted by flurry" if catalog_name else "not from flurry's catalog"
            checks.append(Check(label, OK, f"{detail} ({why})", data=data))
        elif expected == digest:
            what = "the catalog's pin" if pinned else "its pull record"
            if not pinned and path.name in ollama_digests:
                what = "its name in Ollama's manifest"
            checks.append(Check(label, OK, f"{detail} (matches {what})", data=data))
        else:
            fix = f"delete {path} and fetch it again (`flurry models fetch` / `flurry models pull`)"
            if path.name in ollama_digests:  # Ollama's file: Ollama replaces it
                fix = "`ollama rm` the model and `ollama pull` it again"
            checks.append(
                Check(
                    label,
                    FAIL,
                    f"{detail} does NOT match {expected[:16]}…: changed or damaged",
                    fix,
                    data,
                )
            )
    if not files and not checks:
        checks.append(Check("models", WARN, f"no GGUF models in {folder}", "`flurry models fetch`"))
    if home.exists() and cache:
        try:
            tmp = cache_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(cache, f)
            os.replace(tmp, cache_path)
        except OSError:
            pass  # a read-only home: the next run hashes again
    return checks


# --- the skills' sandbox --------------------------------------------------------------------


def check_sandbox() -> list[Check]:
    from skills.cgroup import pids_cgroup
    from skills.registry import sandbox_check

    folder = pids_cgroup("doctor", 1)
    if folder is not None:
        os.rmdir(folder)
    confinement = sandbox_check(None)  # a runner confined as a skill's would be
    if folder is not None:
        # The check's runner is started without the pids cgroup that skills.host puts a skill
        # in where one can be made (as here): its processes are capped after all.
        confinement.missing = [m for m in confinement.missing if "no cap on processes" not in m]
    data = confinement.to_dict()
    if not confinement.applied:
        sandbox = Check(
            "sandbox",
            FAIL,
            confinement.summary(),
            "skills would run unconfined: use a Linux kernel with Landlock and user namespaces",
            data,
        )
    elif confinement.missing:
        sandbox = Check(
            "sandbox",
            WARN,
            confinement.summary(),
            "skills are confined, but not in every way: see what is NOT protected",
            data,
        )
    else:
        sandbox = Check("sandbox", OK, confinement.summary(), data=data)
    if folder is not None:
        cgroup = Check("cgroup", OK, "a pids cgroup can cap each skill's processes")
    elif os.geteuid() == 0:
        cgroup = Check(
            "cgroup",
            WARN,
            "no pids cgroup, and as root nothing else caps a skill's processes",
            "run flurry as an ordinary user (or give it a delegated cgroup)",
        )
    else:
        cgroup = Check(
            "cgroup", OK, "no pids cgroup; each skill's user namespace caps its processes instead"
        )
    return [sandbox, cgroup]


# --- space ----------------------------------------------------------------------------------


def _mount_type(path: Path) -> str | None:
    """The filesystem type of the mount holding ``path`` (Linux)."""
    best, kind = "", None
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    point = parts[1].replace("\\040", " ")
                    inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
                    if inside and len(point) >= len(best):
                        best, kind = point, parts[2]
    except OSError:
        return None
    return kind


def check_runtime(home: Home) -> Check:
    try:
        folder = runtime_dir()
    except HomeError as e:
        return Check("runtime folder", FAIL, str(e), "set FLURRY_RUNTIME_DIR to a tmpfs folder")
    free = shutil.disk_usage(folder).free
    snapshot = home.index_snapshot.stat().st_size if home.index_snapshot.exists() else 0
    kind = _mount_type(folder.resolve())
    data = {"path": str(folder), "free": free, "snapshot": snapshot, "fs": kind}
    detail = f"{folder} ({kind or 'type unknown'}): {free / GIB:.1f} GB free; the index snapshot is {snapshot / 1024**2:.0f} MB"
    if kind not in ("tmpfs", "ramfs", None):
        return Check(
            "runtime folder",
            WARN,
            detail + f" — but it is {kind}, not memory: the unlocked indexes would reach the disk",
            "set FLURRY_RUNTIME_DIR to a tmpfs folder",
            data,
        )
    if free < snapshot:
        return Check(
            "runtime folder",
            FAIL,
            detail + ": the indexes do not fit",
            f"free space in {folder} or grow it (mount -o remount,size=… /dev/shm)",
            data,
        )
    if free < 2 * snapshot:
        return Check(
            "runtime folder",
            WARN,
            detail + ": little room for the indexes to grow",
            f"grow {folder} (mount -o remount,size=… /dev/shm) or set FLURRY_RUNTIME_DIR",
            data,
        )
    return Check("runtime folder", OK, detail, data=data)


def check_disk(home: Home) -> Check:
    where = home.root
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    data = {"path": str(where), "free": free}
    detail = f"{free / GIB:.1f} GB free at {where}"
    if free < GIB // 2:
        return Check(
            "disk", FAIL, detail, "free disk space: adding documents and snapshots fail", data
        )
    if free < 2 * GIB:
        return Check("disk", WARN, detail, "free some disk space soon", data)
    return Check("disk", OK, detail, data=data)


# --- clock ----------------------------------------------------------------------------------


def build_time() -> float:
    """When this flurry was installed or built: its package metadata's mtime (or its code's)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("flurry-node")
        files = [dist.locate_file(f) for f in (dist.files or []) if f.name == "METADATA"]
        return max(os.stat(str(f)).st_mtime for f in files)
    except (PackageNotFoundError, OSError, ValueError):
        return Path(__file__).stat().st_mtime


def check_clock(now: float | None = None, built: float | None = None) -> Check:
    now = time.time() if now is None else now
    built = build_time() if built is None else built
    zone = time.strftime("%Z (UTC%z)", time.localtime(now))
    shown = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    data = {"now": shown, "timezone": zone, "built": datetime.fromtimestamp(built, UTC).isoformat()}
    if now < built:
        return Check(
            "clock",
            FAIL,
            f"{shown} is before this flurry was installed "
            f"({datetime.fromtimestamp(built, UTC):%Y-%m-%d}): the clock is wrong",
            "set the time (e.g. `timedatectl set-ntp true`): signatures carry times and are "
            "refused when the clock is off",
            data,
        )
    return Check("clock", OK, f"{shown}, timezone {zone}", data=data)


# --- service and backup ---------------------------------------------------------------------


def check_service(info: dict) -> Check:
    if not info.get("systemd"):
        return Check(
            "service",
            OK if not info.get("installed") else WARN,
            f"no user systemd here ({info.get('why', '')})",
            "" if not info.get("installed") else f"{info['unit']} is there but nothing runs it",
            info,
        )
    if not info.get("installed"):
        return Check(
            "service",
            OK,
            "not installed",
            "",
            info,
        )
    active = info.get("ActiveState", "unknown")
    detail = (
        f"{info['unit']}: {active} ({info.get('SubState', '?')}), {info.get('UnitFileState', '?')}"
    )
    if active == "active":
        return Check("service", OK, detail, data=info)
    return Check(
        "service",
        WARN,
        detail,
        "`flurry service logs` says why; `systemctl --user restart flurry` starts it again",
        info,
    )


def check_backup(home: Home, now: datetime | None = None) -> Check:
    path = home.root / "last_backup.json"
    if not path.exists():
        return Check("backup", WARN, "never backed up", "`flurry backup DEST` (to another disk)")
    try:
        record = json.loads(path.read_text())
        finished = datetime.fromisoformat(record["finished"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return Check(
            "backup", WARN, f"{path} does not read ({e})", "run `flurry backup DEST` again"
        )
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=UTC)
    age = (now or datetime.now(UTC)) - finished
    data = {k: record.get(k) for k in ("finished", "dest", "snapshot")}
    detail = f"last {finished:%Y-%m-%d %H:%M} to {record.get('dest', '?')} ({age.days} days ago)"
    if age.days >= BACKUP_STALE_DAYS:
        return Check("backup", WARN, detail, "back up again: `flurry backup DEST`", data)
    return Check("backup", OK, detail, data=data)
