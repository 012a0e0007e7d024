"""Receipts: re-execution against the original generation, the fast check, the tamper suite,
and which settings change results on this CPU.

    python bench/bench_receipts.py [--count 200] [--max-tokens 32] [--settings-count 20]

1. --count short prompts, each answered greedily by the default model (SmolLM2-135M) through
   ChatModel.generate_recorded, a receipt issued for each; each verified on the same build by
   exact re-execution and by the fast check (one prefill). Reported: the match rate (goal
   100 %), re-execution time ÷ generation time (goal ≤ 1.1), fast check ÷ generation (goal
   ≤ 0.3), summed over all receipts, each timed around the whole call (signature check and
   prompt tokenization included); and how many output tokens the fast check found to be near
   ties (not the model's first choice in a batched prefill), how far below, and how many
   receipts the fast check passed alone or had to settle by re-execution.
2. The tamper suite, on every receipt: a changed output token hash, prompt hash, model hash,
   setting (n_batch), signature byte or requester — each must be refused; and, on the first
   --settings-count receipts, a provider's signed lie (one output token changed, re-signed):
   must be a mismatch, never verified.
3. Settings: the first --settings-count prompts generated again by a model opened with
   n_threads 2, and with n_batch = n_ubatch = 8; are the tokens the same as with n_threads 1 and
   n_batch 512? And those receipts verified by the n_threads-1 model: must be verified or
   inconclusive, never mismatch unless the tokens truly differ.

Measured here (2 cores shared with three other sessions, 2026-12-02, --count 200, max 32 tokens,
5893 output tokens): exact re-execution 200/200 verified, ÷ generation 0.980 (130.7 s ÷ 133.4 s);
fast check ÷ generation 0.780 (goal 0.3 not met: the prompt prefill, in both, dominates a
32-token reply of this small model on this CPU), 198 passed by the screen, 2 settled by
re-execution (verified); 184 of 5893 tokens were not the prefill's first choice: 59 by > 0.1
logits, 9 > 0.25, 2 > 0.5 (largest 0.512), none > 1. Tamper suite: output hash, prompt hash,
model hash, n_batch, signature, requester: 200/200 refused each; signed lies 20/20 mismatch.
n_threads 2 and n_batch 8: the same tokens for 20/20 prompts; their receipts 20/20 verified.
"""

from __future__ import annotations

import argparse
import base64
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from agent.generation import token_sha256  # noqa: E402
from agent.models import CATALOG, DEFAULT_CHAT_MODEL, ensure_model  # noqa: E402
from agent.receipts import FAST_TOLERANCE, ReceiptRejected, issue, verify  # noqa: E402
from agent.runtime import ChatModel  # noqa: E402
from identity.did_key import did_key_from_ed25519_public, verification_method_id  # noqa: E402
from identity.jws import sign_json  # noqa: E402

ASKS = [
    "Name three {}.",
    "Say one fact about {}.",
    "Write a short sentence about {}.",
    "What colour are {} usually?",
    "Give me a tip about {}.",
    "Why do people like {}?",
    "Describe {} in five words.",
    "List two kinds of {}.",
]
SUBJECTS = [
    "cats", "rivers", "apples", "trains", "books", "mountains", "bicycles", "clouds", "bees",
    "bridges", "guitars", "forests", "oranges", "boats", "castles", "deserts", "owls", "lamps",
    "gardens", "whales", "pencils", "storms", "islands", "coffee cups", "robots", "tulips",
    "volcanoes", "kites", "penguins", "clocks",
]  # fmt: skip


def prompts(count: int) -> list[list[dict]]:
    out = [
        [{"role": "user", "content": ask.format(subject)}] for subject in SUBJECTS for ask in ASKS
    ]
    if count > len(out):
        out += [
            [{"role": "user", "content": f"{m[0]['content']} Answer briefly, number {i}."}]
            for i, m in enumerate(out)
        ]
    return out[:count]


def did(key: Ed25519PrivateKey) -> str:
    return did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def resign(receipt: dict, key: Ed25519PrivateKey) -> dict:
    body = {k: v for k, v in receipt.items() if k != "signatures"}
    return {**body, "signatures": [sign_json(body, key, verification_method_id(did(key)))]}


def tampered(receipt: dict) -> dict[str, dict]:
    def change(path: tuple[str, ...], value: object) -> dict:
        out = copy.deepcopy(receipt)
        target = out
        for name in path[:-1]:
            target = target[name]
        target[path[-1]] = value
        return out

    sig = copy.deepcopy(receipt)
    raw = bytearray(base64.urlsafe_b64decode(sig["signatures"][0]["signature"] + "=="))
    raw[0] ^= 1
    sig["signatures"][0]["signature"] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {
        "output hash": change(("output", "sha256"), "0" * 64),
        "prompt hash": change(("prompt", "sha256"), "0" * 64),
        "model hash": change(("model", "sha256"), "0" * 64),
        "setting (n_batch)": change(("settings", "n_batch"), receipt["settings"]["n_batch"] // 2),
        "signature": sig,
        "requester": change(("requester",), did(Ed25519PrivateKey.generate())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--settings-count", type=int, default=20)
    parser.add_argument("--models", type=Path, default=Path.home() / ".cache/flurry-test-models")
    args = parser.parse_args()

    path = ensure_model(CATALOG[DEFAULT_CHAT_MODEL], args.models, say=lambda line: None)
    model = ChatModel(path, n_threads=1)
    key, requester = Ed25519PrivateKey.generate(), did(Ed25519PrivateKey.generate())
    node_did = did(key)
    asks = prompts(args.count)
    model.generate_recorded(asks[0], max_tokens=4)  # warm up: page the model in

    made = []
    t_gen = t_exact = t_fast = 0.0
    verdicts: dict[str, int] = {}
    fast_verdicts: dict[str, int] = {}
    near_ties, output_tokens = 0, 0
    all_gaps: list[float] = []
    for messages in asks:
        started = time.perf_counter()
        _, generation = model.generate_recorded(messages, max_tokens=args.max_tokens)
        t_gen += time.perf_counter() - started
        receipt = issue(key, node_did, generation, requester)
        tokens = list(generation.output_tokens)
        output_tokens += len(tokens)
        started = time.perf_counter()
        exact = verify(receipt, model, messages, tokens)
        t_exact += time.perf_counter() - started
        verdicts[exact.verdict] = verdicts.get(exact.verdict, 0) + 1
        started = time.perf_counter()
        fast = verify(receipt, model, messages, tokens, fast=True)
        t_fast += time.perf_counter() - started
        fast_name = f"{fast.verdict} ({fast.method})"
        fast_verdicts[fast_name] = fast_verdicts.get(fast_name, 0) + 1
        picks = model.prefill_check(generation.prompt_tokens, tokens, generation.sampler)
        gaps = [gap for (best, gap), token in zip(picks, tokens, strict=True) if best != token]
        near_ties += len(gaps)
        all_gaps += gaps
        made.append((messages, receipt, generation))

    n = len(made)
    print(f"{n} greedy receipts, {output_tokens} output tokens (max_tokens {args.max_tokens})")
    print(f"exact re-execution: {verdicts}; match rate {verdicts.get('verified', 0) / n:.1%}")
    print(f"  re-execution ÷ generation: {t_exact / t_gen:.3f} ({t_exact:.1f} s ÷ {t_gen:.1f} s)")
    print(f"fast check: {fast_verdicts}; ÷ generation: {t_fast / t_gen:.3f} ({t_fast:.1f} s)")
    print(
        f"  near ties: {near_ties} of {output_tokens} output tokens not first in the prefill, "
        f"largest gap {max(all_gaps, default=0):.3f} logits (tolerance {FAST_TOLERANCE}); "
        + ", ".join(f"> {t}: {sum(g > t for g in all_gaps)}" for t in (0.1, 0.25, 0.5, 1.0))
    )

    refused: dict[str, int] = {}
    for _, receipt, _ in made:
        for name, bad in tampered(receipt).items():
            try:
                verify(bad, model, [1])  # refused before the prompt is ever looked at
            except ReceiptRejected:
                refused[name] = refused.get(name, 0) + 1
    lies = 0
    subset = made[: args.settings_count]
    for messages, receipt, generation in subset:
        tokens = list(generation.output_tokens)
        i = len(tokens) // 2
        tokens[i] = (tokens[i] + 7) % model.llama.n_vocab()
        lie = copy.deepcopy(receipt)
        lie["output"]["sha256"] = token_sha256(tokens)
        lies += verify(resign(lie, key), model, messages, tokens).verdict == "mismatch"
    print("tamper suite (refused / tried):")
    for name in tampered(made[0][1]):
        print(f"  {name}: {refused.get(name, 0)} / {n}")
    print(f"  signed lie (one output token changed, re-signed): {lies} / {len(subset)} mismatch")

    for label, options in (
        ("n_threads 2", {"n_threads": 2}),
        ("n_batch 8", {"n_threads": 1, "n_batch": 8, "n_ubatch": 8}),
    ):
        other = ChatModel(path, **options)
        same, outcome = 0, dict[str, int]()
        for messages, _, generation in subset:
            _, g = other.generate_recorded(messages, max_tokens=args.max_tokens)
            truly_same = g.output_tokens == generation.output_tokens
            same += truly_same
            v = verify(issue(key, node_did, g, requester), model, messages, list(g.output_tokens))
            name = v.verdict if truly_same or v.verdict != "mismatch" else "mismatch (true)"
            outcome[name] = outcome.get(name, 0) + 1
        print(
            f"{label}: same tokens as n_threads 1 / n_batch 512 for {same} of {len(subset)}; "
            f"its receipts verified by the n_threads-1 node: {outcome}"
        )


if __name__ == "__main__":
    main()
