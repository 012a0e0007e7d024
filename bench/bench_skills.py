"""What the skill process hop costs: a tool call over MCP (stdio) ÷ the same call in-process.

    python bench/bench_skills.py [CALLS]     (default 500)

A tiny skill (tools `echo(text)` and `word_count(text)` over a ~200-word text) is written to a
temp folder and started with skills.host.SkillProcess as a managed skill, exactly as the
registry starts one (`python -I -S skills/boot.py module:skill`, the skill's folder joining
the import path once confined). After a warm-up, each round times CALLS sequential `call_tool` round trips
(argument validation, JSON-RPC over the pipes, the runner's worker thread, the answer back)
and CALLS direct calls of the same Python function in this process, side by side; three
rounds, alternating which side goes first, and the medians are printed: the per-call
latency of each side (ms) and the ratio process hop ÷ in-process. Also printed: skill
start-up, from `start()` until its tools are listed, with the sandbox (skills.sandbox: Landlock
and a fresh user+network namespace, as the node always starts a skill) and without it (the
runner's --no-sandbox), alternating, median of five fresh starts each, and their ratio; and
what confine() itself takes, timed inside five fresh processes.
"""

from __future__ import annotations

import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skills import boot
from skills.host import SkillProcess
from skills.sandbox import Confinement

ROOT = Path(__file__).resolve().parents[1]
MODULE = "bench_skill_echo"
TEXT_PARAM = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
SOURCE = """
from skills.sdk import Skill

def echo(text):
    return text

def word_count(text):
    counts = {}
    for word in text.lower().split():
        word = word.strip(".,;:!?")
        counts[word] = counts.get(word, 0) + 1
    return str(len(counts)) + " distinct of " + str(sum(counts.values()))

def skill():
    return Skill(
        manifest={
            "name": "bench-echo", "version": "0.1.0", "description": "Echoes and counts words.",
            "tools": [{"name": "echo", "description": "The text, unchanged.", "parameters": PARAMS},
                      {"name": "word_count", "description": "Distinct and total words.", "parameters": PARAMS}],
        },
        tools={"echo": echo, "word_count": word_count},
    )
""".replace("PARAMS", repr(TEXT_PARAM))

VOCABULARY = (
    "the kitchen garden letter bank appointment budget tomato window contractor invoice train "
    "holiday friend birthday recipe bicycle doctor insurance tax school meeting plumber roof "
    "paint flight hotel museum river mountain coffee bread cheese winter summer autumn spring"
)
WORDS = VOCABULARY.split()
TEXT = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(200)).capitalize() + "."


def _process(folder: Path, sandbox: bool = True) -> SkillProcess:
    unconfined = [] if sandbox else ["--no-sandbox"]
    argv = boot.command([*unconfined, f"{MODULE}:skill"])
    return SkillProcess("bench-echo", argv, env=boot.environment(str(folder)), managed=True)


def _time_start(folder: Path, sandbox: bool) -> float:
    process = _process(folder, sandbox)
    start = time.perf_counter()
    process.start()  # returns once initialize and list_tools have answered
    elapsed = time.perf_counter() - start
    assert process.tools and process.sandbox is not None, "a managed skill reports its sandbox"
    assert bool(process.sandbox["filesystem"]) == sandbox, process.sandbox
    process.stop()
    return elapsed


def _summary(sandbox: dict) -> str:
    return Confinement.from_dict(sandbox).summary()


# confine() alone, timed inside a fresh process (start-ups are noisy on a busy machine; this is not).
_CONFINE = """
import os, sys, tempfile, time
from skills.sandbox import confine, interpreter_paths
work = tempfile.mkdtemp()
start = time.perf_counter()
report = confine(work, interpreter_paths(os.getcwd()))
print(time.perf_counter() - start, report.applied)
"""


def _time_confine() -> float:
    with tempfile.TemporaryDirectory() as cwd:
        run = subprocess.run(
            [sys.executable, "-c", _CONFINE],
            env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": cwd},
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
    seconds, applied = run.stdout.split()
    assert applied == "True", run.stdout
    return float(seconds)


def _time_hop(process: SkillProcess, tool: str, args: dict, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        process.call_tool(tool, args)
    return (time.perf_counter() - start) / calls


def _time_local(fn, args: dict, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(**args)
    return (time.perf_counter() - start) / calls


def _ms(values: list[float], digits: int) -> str:
    return " ".join(f"{v * 1e3:.{digits}f}" for v in values)


def main(calls: int = 500, rounds: int = 3) -> None:
    folder = Path(tempfile.mkdtemp(prefix="flurry-bench-skill-"))
    (folder / f"{MODULE}.py").write_text(SOURCE)
    sys.path.insert(0, str(folder))
    tools = importlib.import_module(MODULE).skill().tools
    args = {"text": TEXT}
    try:
        confined: list[float] = []  # start-up seconds
        unconfined: list[float] = []
        for r in range(5):
            # Alternate which goes first, as below.
            for sandbox in (True, False) if r % 2 == 0 else (False, True):
                (confined if sandbox else unconfined).append(_time_start(folder, sandbox))

        process = _process(folder)
        process.start()
        assert process.sandbox is not None, "a managed skill reports its sandbox"
        try:
            for tool, fn in tools.items():
                assert process.call_tool(tool, args) == fn(**args)
            for tool, fn in tools.items():  # warm up both sides
                _time_hop(process, tool, args, 50)
                _time_local(fn, args, 50)
            print(
                f"skill start-up (start() until tools listed), sandboxed: median "
                f"{statistics.median(confined) * 1e3:.1f} ms ({_ms(confined, 1)}); without the sandbox: median "
                f"{statistics.median(unconfined) * 1e3:.1f} ms ({_ms(unconfined, 1)}); ratio sandboxed ÷ not "
                f"{statistics.median(confined) / statistics.median(unconfined):.2f}x"
            )
            confining = [_time_confine() for _ in range(5)]
            print(
                f"  of which confine() itself: median {statistics.median(confining) * 1e3:.2f} ms "
                f"({_ms(confining, 2)}); sandbox: {_summary(process.sandbox)}"
            )
            print(
                f"{calls} sequential calls per side, {rounds} alternating rounds, text of {len(TEXT.split())} words"
            )
            for tool, fn in tools.items():
                hops, local = [], []
                for r in range(rounds):
                    # Alternate which side goes first: this machine's speed drifts within a minute.
                    if r % 2 == 0:
                        hops.append(_time_hop(process, tool, args, calls))
                        local.append(_time_local(fn, args, calls))
                    else:
                        local.append(_time_local(fn, args, calls))
                        hops.append(_time_hop(process, tool, args, calls))
                ratio = statistics.median(h / x for h, x in zip(hops, local, strict=False))
                overhead = statistics.median(h - x for h, x in zip(hops, local, strict=False))
                print(
                    f"{tool:>10}: process hop {statistics.median(hops) * 1e3:.3f} ms/call ({_ms(hops, 3)}); "
                    f"in-process {statistics.median(local) * 1e3:.5f} ms/call ({_ms(local, 5)}); "
                    f"median ratio hop ÷ in-process {ratio:,.0f}x; hop overhead {overhead * 1e3:.3f} ms/call"
                )
        finally:
            process.stop()
    finally:
        sys.path.remove(str(folder))
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
