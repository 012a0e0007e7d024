"""What the key agent saves a command, as ratios measured in one run.

    python bench/bench_unlock.py [ROUNDS]     (default 20)

keys:    getting the unlocked keys from the key agent (connect, peer check, framed JSON, the
         staleness check against the keyring on disk) ÷ unlocking the keyring with the
         passphrase (Argon2id at the keyring's cost), alternating, ROUNDS each.
command: `flurry status` as a process with the agent running ÷ the same with FLURRY_PASSPHRASE,
         alternating, ROUNDS / 4 each (a process imports the project first: that cost is in
         both).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from identity.keyring import Keyring  # noqa: E402
from node import keyagent  # noqa: E402
from node.home import Home  # noqa: E402
from node.node import Node  # noqa: E402

PASSPHRASE = "bench passphrase"


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        os.environ["FLURRY_RUNTIME_DIR"] = tempfile.mkdtemp(dir=folder)
        home = Home(Path(folder) / "home")
        Node.init(home, PASSPHRASE)
        keyagent.start(home, Keyring.unlock(home.keyring, PASSPHRASE), None)
        try:
            agent, argon = [], []
            for _ in range(rounds):
                agent.append(_timed(lambda: keyagent.keys(home)))
                argon.append(_timed(lambda: Keyring.unlock(home.keyring, PASSPHRASE)))
            a, p = statistics.median(agent), statistics.median(argon)
            print(f"keys: agent {a * 1000:.2f} ms, passphrase {p * 1000:.1f} ms (medians)")
            print(f"keys: agent ÷ passphrase = {a / p:.4f}")

            root = str(Path(__file__).resolve().parents[1])
            env = {**os.environ, "FLURRY_HOME": str(home.root), "PYTHONPATH": root}
            status = [sys.executable, "-m", "node.cli", "status"]
            with_agent, with_passphrase = [], []
            for _ in range(max(1, rounds // 4)):
                with_agent.append(
                    _timed(lambda: subprocess.run(status, env=env, check=True, capture_output=True))
                )
                with_passphrase.append(
                    _timed(
                        lambda: subprocess.run(
                            status,
                            env={**env, "FLURRY_PASSPHRASE": PASSPHRASE},
                            check=True,
                            capture_output=True,
                        )
                    )
                )
            a, p = statistics.median(with_agent), statistics.median(with_passphrase)
            print(f"command: with the agent {a:.2f} s, with the passphrase {p:.2f} s (medians)")
            print(f"command: agent ÷ passphrase = {a / p:.3f}")
        finally:
            keyagent.lock(home)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
