"""A chat model on another box, measured (issue 19).

    python bench/bench_remote_model.py [REPEATS]      (default 5)

The other box is llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`)
on loopback, serving the default model (SmolLM2-135M Q4_1): the same GGUF the node would load
in process. Three figures, each against a baseline measured in the same run:

1. decode tokens/s through flurry (agent.remote_model.RemoteChatModel.stream, what a node with
   `remote:NAME` runs) ÷ the same server asked directly with a bare httpx stream, the two
   alternating, REPEATS each, medians (goal ≥ 0.95). Tokens: the server's own usage count.
2. time to first token through the remote ÷ the model in process (agent.runtime.ChatModel):
   reported, not a goal (on one machine the in-process model has no HTTP to cross).
3. failover: the server killed while it streams; the time from the failure to the first piece
   of the next answer, which the local model writes (goal ≤ 2 s), cold (the local model loaded
   then) and warm (already loaded); then, the server started again, the time until a reply
   comes from it again with the probe at its default interval.

Measured on the 2-core dev box: see the closing note of issue 19 (the figures move with the
load of the machine; the ratios are what to compare).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_remote_model import KEY, OtherBox  # noqa: E402

from agent.models import CATALOG, DEFAULT_CHAT_MODEL, ensure_model  # noqa: E402
from agent.remote_model import (  # noqa: E402
    FailoverChatModel,
    Remote,
    RemoteChatModel,
    RemoteUnavailable,
)
from agent.runtime import ChatModel  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]
MAX_TOKENS = 160


def direct(url: str) -> tuple[float, float]:
    """(seconds to the first token, decode tokens/s) asking the server with a bare stream."""
    body = {
        "messages": PROMPT,
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    started = time.perf_counter()
    first = None
    tokens = pieces = 0
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    pieces += 1
                    first = first or time.perf_counter()
    ended = time.perf_counter()
    assert first is not None
    # llama_cpp.server sends no usage in a stream: one piece is one token there (as
    # RemoteChatModel counts when the server says nothing)
    return first - started, ((tokens or pieces) - 1) / (ended - first)


def through(model, tokens_of) -> tuple[float, float]:
    """The same through a flurry model's ``stream``."""
    started = time.perf_counter()
    first = None
    for _ in model.stream(PROMPT, max_tokens=MAX_TOKENS):
        if first is None:
            first = time.perf_counter()
    ended = time.perf_counter()
    assert first is not None
    return first - started, (tokens_of(model) - 1) / (ended - first)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    models = Path.home() / ".cache" / "flurry-test-models"
    gguf = ensure_model(CATALOG[DEFAULT_CHAT_MODEL], models, print)
    box = OtherBox(gguf)
    box.start()
    try:
        remote = RemoteChatModel(Remote("box", box.url, "", KEY))
        local = ChatModel(gguf)
        for _ in range(2):  # warm both: the server's first request loads its caches too
            direct(box.url)
            through(remote, lambda m: m.last_tokens_generated)
        via, bare, inproc = [], [], []
        for _ in range(repeats):
            bare.append(direct(box.url))
            via.append(through(remote, lambda m: m.last_tokens_generated))
            inproc.append(through(local, lambda m: m.last_tokens_generated))
        rate = statistics.median(v[1] for v in via) / statistics.median(b[1] for b in bare)
        ttft = statistics.median(v[0] for v in via) / statistics.median(i[0] for i in inproc)
        print(
            f"decode through flurry {statistics.median(v[1] for v in via):.1f} tok/s, "
            f"direct {statistics.median(b[1] for b in bare):.1f} tok/s: ratio {rate:.3f} (goal ≥ 0.95)"
        )
        print(
            f"first token: remote {statistics.median(v[0] for v in via) * 1000:.0f} ms, "
            f"in process {statistics.median(i[0] for i in inproc) * 1000:.0f} ms: ratio {ttft:.2f}"
        )

        for state in ("cold", "warm"):
            loaded: list[ChatModel] = [local] if state == "warm" else []

            def local_model(loaded: list[ChatModel] = loaded) -> ChatModel:
                if not loaded:
                    loaded.append(ChatModel(gguf))
                return loaded[0]

            failover = FailoverChatModel(
                RemoteChatModel(Remote("box", box.url, "", KEY)), local_model, local_n_ctx=4096
            )
            pieces = failover.stream(PROMPT, max_tokens=MAX_TOKENS)
            next(pieces)
            box.stop()
            try:
                for _ in pieces:
                    pass
            except RemoteUnavailable:
                failed = time.perf_counter()
            started = time.perf_counter()
            next(iter(failover.stream(PROMPT, max_tokens=8)))
            first_local = time.perf_counter()
            assert failover.last_used.startswith("local")
            print(
                f"failover ({state} local model): {first_local - failed:.2f} s from the failure to "
                f"the next answer's first piece (goal ≤ 2 s; {first_local - started:.2f} s of it the answer)"
            )
            box.start()
            back_from = time.perf_counter()
            while True:
                "".join(failover.stream(PROMPT, max_tokens=4))
                if failover.last_used == "remote:box":
                    break
                time.sleep(0.1)
            print(f"  the server back: used again after {time.perf_counter() - back_from:.2f} s")
    finally:
        box.stop()


if __name__ == "__main__":
    main()
