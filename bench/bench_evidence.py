"""Evidence selection alone, no chat model: how often the line a grounded answer rests on holds
the gold answer, and how often an unanswerable question finds no line at all (issue 11).

    python bench/bench_evidence.py [--seed 7] [--k 3] [--show wrong|all|none] [--half even|odd] [--cache FILE]

A grounded answer shows the best evidence line quoted whenever the model's sentence does not
pass the check, so this is the ceiling of its accuracy, and its abstention, measured in seconds
instead of the minutes ``bench_answers.py`` takes with the model. ``--half`` runs every other
question: tune a rule on one half, report it on the other, so a rule is not fitted to the
questions it is judged by. ``--cache`` keeps each question's retrieved chunks and the
embeddings of the lines: the next run, with a changed rule, takes seconds (delete it after a
change to retrieval or splitting).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))
sys.path.insert(0, str(HERE))

import answer_checks as checks  # noqa: E402
from answer_corpus import build  # noqa: E402
from bench_answers import PASSPHRASE, fill, is_gold, models_dir  # noqa: E402

from agent import claims, evidence, grounding, kinds  # noqa: E402
from agent.answer import candidates  # noqa: E402
from agent.embedding import Embedder  # noqa: E402
from agent.models import CATALOG, DEFAULT_EMBEDDING_MODEL, ensure_model  # noqa: E402
from node.home import Home  # noqa: E402
from node.node import Node  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--k", type=int, default=3, help="chunks retrieved per question (the answer path's k)"
    )
    p.add_argument("--show", choices=("wrong", "all", "none"), default="wrong")
    p.add_argument("--cache", help="keep retrieval and line embeddings here between runs")
    p.add_argument("--why", metavar="QUESTION", help="print how the lines of one question scored")
    p.add_argument(
        "--words",
        action="store_true",
        help="print the question's topic words the best line's record lacks",
    )
    p.add_argument("--half", choices=("even", "odd"), help="only every other question")
    args = p.parse_args()

    folder = models_dir()
    corpus = build(args.seed)
    questions = corpus.questions
    if args.half:
        questions = questions[0 if args.half == "even" else 1 :: 2]
    cache_file = Path(args.cache) if args.cache else None
    retrieved, vectors = (
        pickle.loads(cache_file.read_bytes()) if cache_file and cache_file.exists() else ({}, {})
    )
    missing = [q for q in corpus.questions if q.text not in retrieved]
    if missing:
        with tempfile.TemporaryDirectory(prefix="flurry-evidence-") as tmp:
            home = Home(Path(tmp) / "home")
            Node.init(home, PASSPHRASE)
            node = Node.open(home, PASSPHRASE, say=lambda line: None)
            try:
                fill(node, corpus, Path(tmp) / "data", None)
                for q in missing:
                    retrieved[q.text] = node.retrieve(q.text, args.k)
            finally:
                node.close()
    embedder: list[Embedder] = []

    def embed(texts: list[str]):
        new = [t for t in dict.fromkeys(texts) if t not in vectors]
        if new:
            if not embedder:
                embedder.append(Embedder(ensure_model(CATALOG[DEFAULT_EMBEDDING_MODEL], folder)))
            vectors.update(zip(new, embedder[0].embed(new), strict=False))
        return np.stack([vectors[t] for t in texts])

    if args.why:
        sources = retrieved[args.why]
        print(f"kind: {kinds.asks_for(args.why)}")
        for e in evidence.score(args.why, candidates(sources), embed)[:10]:
            print(
                f"{e.score:.3f} cov={e.coverage:.2f} named={evidence.of_the_named(args.why, e)} [{e.source}] {e.full[:150]}"
            )
        print(
            "chosen:",
            [
                e.text
                for e in evidence.select(
                    evidence.score(args.why, candidates(sources), embed), args.why
                )
            ],
        )
        return
    rows = []
    started = time.perf_counter()
    for q in questions:
        sources = retrieved[q.text]
        chosen = evidence.select(evidence.score(q.text, candidates(sources), embed), q.text)
        best = chosen[0] if chosen else None
        # What a quoted fallback shows: the line in its record's context.
        shown = best.full if best else grounding.NOT_FOUND
        right = q.answerable and checks.is_right(shown, q.gold)
        in_any = q.answerable and any(checks.is_right(e.full, q.gold) for e in chosen)
        gold_rank = (
            next((i for i, s in enumerate(sources, 1) if is_gold(s, q)), None)
            if q.answerable
            else None
        )
        rows.append((q, best, right, in_any, gold_rank))
        if args.words:
            cands = candidates(sources)
            every = (
                set().union(*(set(claims.content_words(c.full + " " + c.record)) for c in cands))
                if cands
                else set()
            )
            have = set(claims.content_words(best.full + " " + best.record)) if best else set()
            miss = evidence.topic_words(q.text) - have
            tag = "ANS" if q.answerable else "UNA"
            ok = "right" if right else ("abst" if best is None else "wrong")
            sims = {}
            if best is not None and miss:
                lines_of = [c.full for c in cands if c.source == best.source]
                vec = embed(sorted(miss) + lines_of)
                for i, w in enumerate(sorted(miss)):
                    sims[w] = round(float(max(vec[len(miss) :] @ vec[i])), 2)
            print(
                f"{tag} {ok:5} minsim={min(sims.values()) if sims else 1:.2f} {sims} elsewhere={sorted(miss & every)} nowhere={sorted(miss - every)} :: {q.text}"
            )
    seconds = time.perf_counter() - started
    if cache_file:
        cache_file.write_bytes(pickle.dumps((retrieved, vectors)))

    yes = [r for r in rows if r[0].answerable]
    no = [r for r in rows if not r[0].answerable]
    print(
        f"{len(rows)} questions ({len(yes)} answerable), seed {args.seed}, k {args.k}, {seconds:.1f} s"
    )
    print(
        f"best line holds the gold:      {sum(r[2] for r in yes)}/{len(yes)} = {sum(r[2] for r in yes) / len(yes):.2f}"
    )
    print(f"some chosen line holds it:     {sum(r[3] for r in yes)}/{len(yes)}")
    print(f"false abstention (no line):    {sum(r[1] is None for r in yes)}/{len(yes)}")
    print(
        f"abstention (unanswerable):     {sum(r[1] is None for r in no)}/{len(no)} = {sum(r[1] is None for r in no) / len(no):.2f}"
    )
    print(f"gold record retrieved (top k): {sum(r[4] is not None for r in yes)}/{len(yes)}")
    per: dict[str, list[int]] = {}
    for q, best, right, _, _ in rows:
        c = per.setdefault(q.fmt, [0, 0, 0, 0])
        if q.answerable:
            c[0] += right
            c[1] += 1
        else:
            c[2] += best is None
            c[3] += 1
    print(
        "per format (right/answerable, abstained/unanswerable): "
        + ", ".join(f"{fmt} {c[0]}/{c[1]} {c[2]}/{c[3]}" for fmt, c in per.items())
    )
    if args.show != "none":
        print()
        for q, best, right, in_any, rank in rows:
            bad = (q.answerable and not right) or (not q.answerable and best is not None)
            if args.show == "all" or bad:
                tag = (
                    "ok "
                    if not bad
                    else (
                        "ABST"
                        if q.answerable and best is None
                        else "WRONG"
                        if q.answerable
                        else "MISS"
                    )
                )
                print(f"{tag:5} [{q.fmt}] {q.text}  gold={q.gold[:1]} rank={rank} any={in_any}")
                print(
                    f"       → {best.full if best else '-'}  ({best.score if best else ''} cov {best.coverage if best else ''})"
                )


if __name__ == "__main__":
    main()
