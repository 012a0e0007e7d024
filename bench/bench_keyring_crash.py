"""kill -9 at random moments during `flurry passphrase change` and `flurry recover`.

    python bench/bench_keyring_crash.py [KILLS] [SEED]     (KILLS per command, default 20)

Each run starts from the same keyring (a passphrase and a recovery code), kills the command
at a random moment, then tries the old passphrase, the new one and the recovery code. The
goal: 0 "neither", and the recovery code opening the keyring every time.

Random moments over the whole process would land almost always in Python's start-up (about
2 s of imports against a few tenths of a second of work). So each command runs in a process
that has already imported the command line and waits for a "go" on stdin: the kill lands
uniformly in [0, 1.2 × the command's own duration], measured first in the same run, so a
few kills also come after it finished. The same calibration gives the cost of a change as a
ratio to one unlock (Argon2id dominates both).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from identity.keyring import Keyring, KeyringError, WrongPassphrase  # noqa: E402
from identity.recovery_code import RecoveryCode  # noqa: E402

OLD = "the old passphrase"
NEW = "the new passphrase"

# The command line imported first, then the command run on "go": only its work is timed.
PRELOADED = """
import sys
from node.cli import cli
print("ready", flush=True)
sys.stdin.readline()
cli(sys.argv[1:], prog_name="flurry")
"""


def start(home: Path, code: RecoveryCode, command: list[str]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "FLURRY_HOME": str(home),
        "FLURRY_PASSPHRASE": OLD,
        "FLURRY_NEW_PASSPHRASE": NEW,
        "FLURRY_RECOVERY_CODE": " ".join(code.words),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", PRELOADED, *command],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def opens(path: Path, passphrase: str) -> bool:
    try:
        Keyring.unlock(path, passphrase)
    except WrongPassphrase:
        return False
    return True


def recovery_opens(path: Path, code: RecoveryCode) -> bool:
    try:
        Keyring.unlock_with_recovery_code(path, code)
    except KeyringError:
        return False
    return True


def main() -> None:
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="bench-keyring-"))
    template = work / "template"
    template.mkdir(mode=0o700)
    code = RecoveryCode.generate()
    Keyring.create(template / "keyring.json", OLD)
    Keyring.set_recovery_code(template / "keyring.json", OLD, code)
    started = time.perf_counter()
    Keyring.unlock(template / "keyring.json", OLD)
    unlock_seconds = time.perf_counter() - started
    print(f"seed {seed}; one unlock (Argon2id) {unlock_seconds:.3f} s")
    failures = 0
    try:
        for command in (["passphrase", "change"], ["recover"]):
            name = " ".join(command)
            durations = []
            for n in range(3):
                home = work / f"{command[0]}-calibrate-{n}"
                shutil.copytree(template, home)
                process = start(home, code, command)
                began = time.perf_counter()
                go(process)
                assert process.wait(timeout=120) == 0, f"`flurry {name}` failed unkilled"
                durations.append(time.perf_counter() - began)
                assert opens(home / "keyring.json", NEW)
            duration = sorted(durations)[1]
            outcomes: Counter[str] = Counter()
            for n in range(kills):
                home = work / f"{command[0]}-{n}"
                shutil.copytree(template, home)
                path = home / "keyring.json"
                process = start(home, code, command)
                go(process)
                time.sleep(rng.uniform(0, 1.2 * duration))
                process.send_signal(signal.SIGKILL)
                process.wait()
                finished = process.returncode == 0
                old, new = opens(path, OLD), opens(path, NEW)
                state = "both" if old and new else "old" if old else "new" if new else "neither"
                outcomes[state] += 1
                outcomes["finished before the kill"] += finished
                outcomes["recovery code did not open"] += not recovery_opens(path, code)
                outcomes["temporary file left"] += bool(list(home.glob(".keyring.json.*.tmp")))
                shutil.rmtree(home)
            bad = outcomes["neither"] + outcomes["both"] + outcomes["recovery code did not open"]
            failures += bad
            print(
                f"flurry {name}: {kills} kills in [0, {1.2 * duration:.3f} s]: "
                f"old {outcomes['old']}, new {outcomes['new']}, neither {outcomes['neither']}, "
                f"both {outcomes['both']}; finished before the kill "
                f"{outcomes['finished before the kill']}; recovery code failed to open "
                f"{outcomes['recovery code did not open']}; a temporary file left "
                f"{outcomes['temporary file left']} (cleared by the next change)"
            )
            print(f"  its work takes {duration / unlock_seconds:.1f} × one unlock")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        sys.exit(f"{failures} kills left a keyring that did not open as it must")


if __name__ == "__main__":
    main()
