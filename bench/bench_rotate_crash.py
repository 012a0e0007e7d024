"""kill -9 during `flurry keys rotate`, at random moments: old keys, new keys, or neither?

    python bench/bench_rotate_crash.py [RUNS]      (default 20)

A template home is made once (with a pinned peer on a closed loopback port, so the rotation
also announces and audits). Each run copies it, starts the real `flurry keys rotate` as a
subprocess and, once its imports are done, kills it with SIGKILL after a random delay drawn
from 0 to 1.1 × the time an uninterrupted rotation takes from that point (measured in this
run, median of 3). Then the home is checked:

- old: the keyring opens with the passphrase and holds the old DIDs, no statement;
- new: it opens with new DIDs, and its chain verifies from the old DIDs to them;
- neither: anything else (does not open, new keys without their statement, …). The goal is 0.

In every case the node must also open and its audit log verify (the rotation's entry is
written at open when the kill came before it).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from identity.did_key import did_key_from_ed25519_public, ed25519_public_from_did_key  # noqa: E402
from identity.keyring import Keyring, KeyringError  # noqa: E402
from identity.rotation import RotationRejected, verify_chain  # noqa: E402
from node.home import Home  # noqa: E402
from node.node import Node  # noqa: E402
from node.peers import add_peer  # noqa: E402

PASSPHRASE = "bench rotate crash passphrase"


# `flurry keys rotate`, started after the command line's imports are done and said so: the
# kill moments are drawn over the rotation's own work, not over Python starting up (which
# takes seconds on a busy box and rotates nothing).
_CHILD = """
import sys
from node.cli import main
print("ready", flush=True)
sys.argv = ["flurry", "keys", "rotate"]
main()
"""


def _rotate(home: Path) -> subprocess.Popen:
    """The rotation in a subprocess, returned once its imports are done."""
    env = {
        **os.environ,
        "FLURRY_HOME": str(home),
        "FLURRY_PASSPHRASE": PASSPHRASE,
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit("the rotation did not start")
    return process


def _key(did_url: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(did_url))


def _classify(home: Home, before: dict) -> tuple[str, bool]:
    """("old" | "new" | "neither", whether the node opens and its audit log verifies)."""
    try:
        keys = Keyring.unlock(home.keyring, PASSPHRASE)
    except KeyringError:
        return "neither", False
    if (keys.owner_did, keys.node_did) == (before["owner_did"], before["node_did"]):
        state = "old" if not keys.rotations else "neither"
    else:
        try:
            chain = verify_chain(list(keys.rotations))
            from_old = keys.rotations[0]["previous"] == {
                "owner": before["owner_did"],
                "node": before["node_did"],
            }
            state = "new" if from_old and chain.node == keys.node_did else "neither"
        except RotationRejected:
            state = "neither"
    try:
        with Node.open(home, PASSPHRASE, say=lambda line: None) as node:
            opens = node.audit.verify(_key).ok
            rotated = [e for e in node.audit.entries() if e.action == "keys.rotate"]
            opens = opens and len(rotated) == (1 if state == "new" else 0)
    except Exception:  # noqa: BLE001 - any failure to open is what this counts
        opens = False
    return state, opens


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    work = Path(tempfile.mkdtemp(prefix="bench-rotate-"))
    os.environ["FLURRY_RUNTIME_DIR"] = str(work / "runtime")
    rng = random.Random(14)
    try:
        template = Home(work / "template")
        Node.init(template, PASSPHRASE)
        with Node.open(template, PASSPHRASE, say=lambda line: None) as node:
            # Port 9 (discard) is closed on loopback: the announcement fails at once, audited.
            peer = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
            add_peer(node.vault, "http://127.0.0.1:9", did_key_from_ed25519_public(peer), "gone")
        before = Keyring.read_public(template.keyring)

        def copy(name: str) -> Home:
            shutil.copytree(template.root, work / name)
            (work / name / "lock").unlink(missing_ok=True)
            return Home(work / name)

        full = []
        for n in range(3):
            process = _rotate(copy(f"full-{n}").root)
            started = time.perf_counter()
            if process.wait(timeout=300) != 0:
                raise SystemExit("flurry keys rotate failed")
            full.append(time.perf_counter() - started)
        work_seconds = sorted(full)[1]
        print(
            f"flurry keys rotate, after its imports: {work_seconds:.2f} s (median of 3); "
            f"kills drawn from 0 to {1.1 * work_seconds:.2f} s after that"
        )
        counts = {"old": 0, "new": 0, "neither": 0}
        opened, finished = 0, 0
        for run in range(runs):
            home = copy(f"run-{run}")
            delay = rng.uniform(0, 1.1 * work_seconds)
            process = _rotate(home.root)
            time.sleep(delay)
            if process.poll() is not None:
                finished += 1  # it ended before the kill: still counted by what it left
            else:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            state, opens = _classify(home, before)
            counts[state] += 1
            opened += opens
            print(
                f"run {run + 1:2}: kill at {delay:.2f} s → {state}"
                + ("" if opens else "  (the node did NOT open cleanly)")
            )
        print(
            f"\n{runs} kills: old {counts['old']}, new {counts['new']}, neither {counts['neither']}; "
            f"node opened and audit verified {opened}/{runs}; {finished} runs ended before their kill"
        )
        if counts["neither"] or opened != runs:
            raise SystemExit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
