"""What verifying a shared skill costs: installing a ~1 MB skill from a signed release, with every
check, ÷ installing the same wheel from the same place without any.

    python bench/bench_skill_verify.py [ROUNDS]     (default 7)

One node, served by uvicorn on 127.0.0.1 as `flurry serve` serves it, holds a release of a
~1 MB skill (its echo tool plus 1 MB of incompressible data) in its public skills container.
Each round installs it twice, in alternating order, and removes it after each:

- verified: node.skill_install.install_release from the manifest's URL: the manifest downloaded
  and its signature checked (skills.release), the wheel downloaded with a cap, its size and
  sha256 checked, its archive read for paths leaving the folder, the ordinary install (pip
  unpacks, the confined runner reads the manifest), then every tool's hash against the release;
- baseline: the same wheel downloaded from the same URL (plain GET) and installed with the
  registry (Skills.install: pip unpacks, the confined runner reads the manifest), nothing checked.

Printed: the median of each side (s), the ratio verified ÷ baseline (goal ≤ 1.1), and the
median time of the checks alone (signature, wheel hash, archive, tool hashes) on bytes in memory.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from conftest import Served  # noqa: E402
from release_helpers import put_release, release_for, skill_manifest, wheel_bytes  # noqa: E402

from node.home import Home  # noqa: E402
from node.node import Node  # noqa: E402
from node.skill_catalog import SKILLS_CONTAINER  # noqa: E402
from node.skill_download import read_release  # noqa: E402
from node.skill_install import check_wheel_archive, install_release  # noqa: E402
from skills.manifest import Manifest  # noqa: E402
from skills.release import parse_release  # noqa: E402

PASSPHRASE = "bench skill verify passphrase"
NAME = "verified-echo"


def _baseline(node: Node, wheel_url: str, filename: str) -> float:
    start = time.perf_counter()
    with httpx.Client(timeout=30, trust_env=False) as http:
        data = http.get(wheel_url).content
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / filename
        path.write_bytes(data)
        node.skills.install(path)
    elapsed = time.perf_counter() - start
    node.skills.remove(NAME)
    return elapsed


def _verified(node: Node, manifest_url: str) -> float:
    start = time.perf_counter()
    install_release(node, manifest_url, allow_stranger=True)  # its own DID is no pinned peer
    elapsed = time.perf_counter() - start
    node.skills.remove(NAME)
    return elapsed


def _checks_alone(raw: bytes, wheel: bytes, code: dict) -> float:
    start = time.perf_counter()
    release = parse_release(raw)
    release.check_wheel(wheel)
    check_wheel_archive(wheel, NAME)
    release.check_manifest(Manifest.from_dict(code))
    return time.perf_counter() - start


def main(rounds: int = 7) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-skill-verify-") as root:
        os.environ.setdefault("FLURRY_MODELS", str(Path(root) / "models"))
        home = Home(Path(root) / "home")
        Node.init(home, PASSPHRASE)
        node = Node.open(home, PASSPHRASE, say=lambda line: None)
        served = Served(node)  # as `flurry serve` serves it, strangers' rate lifted
        url = served.url
        try:
            node.grants.set_public_modes(SKILLS_CONTAINER, ["read"])
            code = skill_manifest(NAME, "1.0.0")
            filename, wheel = wheel_bytes(
                code, extra={"verified_echo_data.bin": os.urandom(1 << 20)}
            )
            document = release_for(code, filename, wheel, node.keys.node_key, node.keys.node_did)
            manifest_url = put_release(node, url, NAME, "1.0.0", document, (filename, wheel))
            wheel_url = manifest_url.rsplit("/", 1)[0] + "/" + filename
            with httpx.Client(trust_env=False) as http:
                raw = http.get(manifest_url).content
                read_release(http, manifest_url)  # the served release passes before timing
            print(f"wheel: {len(wheel) / 1e6:.2f} MB, {rounds} rounds, alternating order")
            _baseline(node, wheel_url, filename)  # warm-up: pip's and the runner's imports cached
            base, verified, checks = [], [], []
            for i in range(rounds):
                if i % 2:
                    verified.append(_verified(node, manifest_url))
                    base.append(_baseline(node, wheel_url, filename))
                else:
                    base.append(_baseline(node, wheel_url, filename))
                    verified.append(_verified(node, manifest_url))
                checks.append(_checks_alone(raw, wheel, code))
        finally:
            served.stop()
            node.close()
    b, v = statistics.median(base), statistics.median(verified)
    print(f"install without verification: {b:.3f} s (median)")
    print(f"install with verification:    {v:.3f} s (median)")
    print(f"the checks alone:             {statistics.median(checks) * 1000:.1f} ms (median)")
    print(f"ratio verified / baseline:    {v / b:.3f}  (goal <= 1.1)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
