"""Chat speed through flurry against bare llama.cpp, as ratios measured in one run.

    python bench/bench_chat.py [MODELS_DIR]

1. decode tok/s through flurry (ChatModel.stream, the path `flurry ask` uses) ÷ a bare
   ``llama_cpp.Llama`` generate loop on the same GGUF and prompt (goal ≥ 0.95);
2. time to first token at turn 10 of a conversation with ~1k tokens of history ÷ turn 1
   (goal ≤ 1.5): shows the KV cache is reused instead of re-reading the history.
Machines are noisy: each figure is the median of several runs, alternating the two sides.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp  # noqa: E402

from agent.answer import Conversation, Source  # noqa: E402
from agent.models import CATALOG, DEFAULT_CHAT_MODEL, ensure_model  # noqa: E402
from agent.runtime import ChatModel, default_threads  # noqa: E402

TOKENS = 128
# Makes each question about 80 tokens long, so that ten turns build ~1k tokens of history.
STORY = (
    "We are clearing out the house before the move in spring, room by room, and I keep losing "
    "track of where things went: the shed, the garage, the attic and the cellar are all full, and "
    "the removal company comes on the first Monday of the month at eight in the morning."
)
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and her cat."}]


def decode_ratio(path: Path, repeats: int = 5) -> None:
    model = ChatModel(path)
    bare = llama_cpp.Llama(
        model_path=str(path), n_ctx=4096, n_threads=default_threads(), verbose=False
    )
    prompt_tokens = bare.tokenize(
        b"<|im_start|>user\nWrite a long story about a lighthouse keeper and her cat.<|im_end|>\n<|im_start|>assistant\n",
        special=True,
    )

    def through_flurry() -> float:
        pieces = model.stream(PROMPT, max_tokens=TOKENS, temperature=0.0, repeat_penalty=1.0)
        next(pieces)  # the prompt is read before the first piece; time decoding only
        start = time.perf_counter()
        for _ in pieces:
            pass
        return (model.last_tokens_generated - 1) / (time.perf_counter() - start)

    def bare_loop() -> float:
        bare.reset()
        n = 0
        start = None
        for _token in bare.generate(prompt_tokens, temp=0.0, repeat_penalty=1.0):
            n += 1
            if n == 1:
                start = time.perf_counter()
            if n >= TOKENS:
                break
        assert start is not None, "the model generated no token to time"
        return (n - 1) / (time.perf_counter() - start)

    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(through_flurry())
        theirs.append(bare_loop())
    o, t = statistics.median(ours), statistics.median(theirs)
    print(
        f"decode: flurry {o:.1f} tok/s, bare llama.cpp {t:.1f} tok/s, ratio {o / t:.3f} (goal >= 0.95)"
    )


def ttft_ratio(path: Path) -> None:
    model = ChatModel(path)
    notes = [
        Source(
            i,
            f"notes/n{i}.md",
            0,
            0.0,
            f"Note {i}: the {w} is kept in the {p} and checked every {d}.",
        )
        for i, (w, p, d) in enumerate(
            [
                ("ladder", "shed", "spring"),
                ("kayak", "garage", "June"),
                ("tent", "attic", "August"),
                ("drill", "cellar", "week"),
            ],
            start=1,
        )
    ]
    # The free path: it replays the history every turn (a grounded turn reads only its evidence).
    conversation = Conversation(
        model, lambda q, k: notes[:k], max_answer_tokens=100, grounded=False
    )
    firsts = []
    for turn in range(1, 11):
        start = time.perf_counter()
        thing = ["ladder", "kayak", "tent", "drill"][turn % 4]
        answer = conversation.ask(f"{STORY} So, question {turn}: where is the {thing} kept?")
        answer.read()
        assert answer.first_piece_at is not None, "the answer had no piece to time"
        firsts.append(answer.first_piece_at - start)
        print(
            f"  turn {turn:2}: ttft {firsts[-1] * 1000:6.1f} ms, prompt tokens read {model.last_prompt_tokens_read:4}, "
            f"context {model.tokens_in_context():5}"
        )
    print(
        f"ttft: turn 1 {firsts[0] * 1000:.1f} ms, turn 10 {firsts[-1] * 1000:.1f} ms, ratio {firsts[-1] / firsts[0]:.2f} (goal <= 1.5)"
    )


def main() -> None:
    folder = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "flurry-test-models"
    )
    path = ensure_model(CATALOG[DEFAULT_CHAT_MODEL], folder)
    decode_ratio(path)
    ttft_ratio(path)


if __name__ == "__main__":
    main()
