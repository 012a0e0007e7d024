"""`flurry doctor` (node.doctor): every line OK, WARN or FAIL with what to do, on a locked node."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

from agent import llama_loading
from agent.models import CATALOG, DEFAULT_CHAT_MODEL
from node import doctor
from node.home import Home

NAMES = {
    "home",
    "llama.cpp",
    "gpu",
    "sandbox",
    "cgroup",
    "runtime folder",
    "disk",
    "clock",
    "service",
    "backup",
}


def test_doctor_needs_no_passphrase_and_prints_one_json_object(cli, tmp_path):
    cli("init")
    del cli.env["FLURRY_PASSPHRASE"]  # locked: asking for it would fail (stdin is no terminal)
    cli.env["PATH"] = str(tmp_path)  # no systemctl, no nvidia-smi: this box's answers stay out
    run = cli("doctor", "--json", check=False)
    report = json.loads(run.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) >= NAMES, set(checks)
    assert all(c["status"] in ("OK", "WARN", "FAIL") for c in report["checks"])
    assert report["worst"] == max(
        (c["status"] for c in report["checks"]), key=["OK", "WARN", "FAIL"].index
    )
    assert run.returncode == (1 if report["worst"] == "FAIL" else 0)
    assert checks["home"]["status"] == "OK" and "not served now" in checks["home"]["detail"]
    assert checks["backup"] == {
        "name": "backup",
        "status": "WARN",
        "detail": "never backed up",
        "fix": "`flurry backup DEST` (to another disk)",
    }
    assert checks["service"]["detail"].startswith("no user systemd here (there is no systemctl")
    assert checks["runtime folder"]["data"]["path"] == cli.env["FLURRY_RUNTIME_DIR"]
    # The test models: the chat model is pinned in the catalog, and its hash matches the pin.
    chat = next(c for c in report["checks"] if c["name"] == "chat model")
    assert chat["status"] == "OK" and "matches the catalog's pin" in chat["detail"]
    assert chat["data"]["sha256"] == CATALOG[DEFAULT_CHAT_MODEL].gguf_sha256

    text = cli("doctor", check=False).stdout
    assert "WARN  backup          never backed up" in text
    assert "→ `flurry backup DEST` (to another disk)" in text


def test_a_model_that_does_not_match_its_pin_fails_and_hashes_are_cached(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("FLURRY_MODELS", str(models))
    home = Home(tmp_path / "home")
    home.root.mkdir()
    home.keyring.write_text("{}")  # a home, as far as the doctor looks: it opens nothing sealed
    damaged = models / CATALOG[DEFAULT_CHAT_MODEL].filename
    damaged.write_bytes(b"not the model at all")
    seen = []
    (check,) = [
        c
        for c in doctor.check_models(
            home, lambda name, done, total: seen.append((name, done, total))
        )
        if c.data.get("path") == str(damaged)
    ]
    assert check.status == "FAIL" and "does NOT match" in check.detail
    assert "fetch it again" in check.fix
    assert seen == [(damaged.name, 20, 20)]

    # A second look reads the digest from the cache while size and mtime are unchanged…
    cache_path = home.root / "model-hashes.json"
    cache = json.loads(cache_path.read_text())
    cache[str(damaged.resolve())]["sha256"] = CATALOG[DEFAULT_CHAT_MODEL].gguf_sha256
    cache_path.write_text(json.dumps(cache))
    seen.clear()
    again = doctor.check_models(home, lambda *a: seen.append(a))
    assert not seen and any(c.status == "OK" and c.data.get("path") == str(damaged) for c in again)
    # …and hashes again once the file changed.
    later = time.time() + 5
    os.utime(damaged, (later, later))
    assert any(
        c.status == "FAIL" and c.data.get("path") == str(damaged) for c in doctor.check_models(home)
    )


def test_the_last_backup_is_read_and_old_ones_warn(tmp_path):
    home = Home(tmp_path)
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    record = {
        "finished": (now - timedelta(days=1)).isoformat(),
        "dest": "/mnt/usb",
        "snapshot": "ab12",
    }
    (tmp_path / "last_backup.json").write_text(json.dumps(record))
    fresh = doctor.check_backup(home, now)
    assert fresh.status == "OK" and "to /mnt/usb (1 days ago)" in fresh.detail
    assert doctor.check_backup(home, now + timedelta(days=7)).status == "WARN"
    (tmp_path / "last_backup.json").write_text("{not json")
    broken = doctor.check_backup(home, now)
    assert broken.status == "WARN" and "does not read" in broken.detail


def test_a_clock_before_the_build_fails():
    built = time.time()
    assert doctor.check_clock(now=built + 60, built=built).status == "OK"
    wrong = doctor.check_clock(now=built - 86400 * 400, built=built)
    assert wrong.status == "FAIL" and "the clock is wrong" in wrong.detail


def test_gpu_offload_says_why_not():
    assert doctor.gpu_check(True, ["H100 (70.0 GB free)"]).status == "OK"
    cpu_build = doctor.gpu_check(False, ["H100 (70.0 GB free)"])
    assert cpu_build.status == "WARN" and "CPU-only" in cpu_build.detail
    assert "-DGGML_CUDA=on" in cpu_build.fix
    assert doctor.gpu_check(False, []).detail.startswith("CPU only: no GPU backend")


def test_the_build_features_are_read_from_llama_cpp():
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    features = doctor.build_features(info)
    assert features and all(isinstance(v, bool) for v in features.values())
    assert doctor.build_features("CPU : SSE3 = 1 | AVX2 = 0 | ") == {"SSE3": True, "AVX2": False}
    # Where the CPU has AMX, the owner is told that it is left unused, and why.
    llama = doctor.check_llama()[0]
    assert ("AMX is left unused" in llama.detail) == llama_loading.cpu_has_amx(), llama.detail


def test_indexes_that_do_not_fit_the_runtime_folder_fail(tmp_path, runtime_dir, monkeypatch):
    monkeypatch.setenv("FLURRY_RUNTIME_DIR", str(runtime_dir))
    home = Home(tmp_path)
    fits = doctor.check_runtime(home)
    assert fits.status == "OK" and fits.data["snapshot"] == 0
    with open(home.index_snapshot, "wb") as f:  # sparse: as big as it says, nothing written
        f.truncate(fits.data["free"] + 1)
    too_big = doctor.check_runtime(home)
    assert too_big.status == "FAIL" and "do not fit" in too_big.detail


def test_the_service_line_says_what_systemd_says():
    unit = "/home/me/.config/systemd/user/flurry.service"
    running = {"unit": unit, "installed": True, "systemd": True, "ActiveState": "active"}
    assert doctor.check_service({**running, "SubState": "running"}).status == "OK"
    failed = doctor.check_service({**running, "ActiveState": "failed", "SubState": "failed"})
    assert failed.status == "WARN" and "`flurry service logs` says why" in failed.fix
    absent = {"unit": unit, "installed": False, "systemd": True}
    assert doctor.check_service(absent).detail == "not installed"
    orphan = {"unit": unit, "installed": True, "systemd": False, "why": "no systemctl"}
    assert doctor.check_service(orphan).status == "WARN"
