"""The answer benchmark (issue 11): are the node's answers right, grounded, and honest about
what the data does not say — and what does that cost against today's free answer?

    python bench/bench_answers.py [--limit N] [--formats markdown,eml,...] [--models NAME_OR_GGUF,...]
                                  [--modes grounded,free] [--seed 7] [--results /tmp/answerbench-results.md]

To measure another branch's answer path with this benchmark, put its checkout first on the
path: ``PYTHONPATH=/path/to/branch python bench/bench_answers.py``.

A fresh home gets the synthetic corpus of ``answer_corpus`` (every format flurry reads, pod
resources PUT into its pod), then every question goes through the real answer path
(``node.conversation().ask``) with the real models, once grounded (the default, where the code
has it) and once free (``grounded=False``, today's path), side by side, alternating which
goes first. Reported per model, per mode and per format:

  accuracy      a gold string in the shown answer (and in the answer without its quoted spans;
                and in the answer with its sources' quotes, which every channel shows with it);
  unsupported   shown sentences with a number, date, name, e-mail or quote that their cited
                evidence does not hold (``answer_checks``, independent of the node's verifier);
  abstention    unanswerable questions answered "not in your data"; false abstentions on
                answerable ones;
  cost          median seconds to a verified (grounded) answer ÷ median seconds to a free
                answer, same questions, same run;
  recall@k      the gold record among the k best retrieved chunks (retrieval alone), so a
                retrieval failure can be told from an answering one.

Interim results (figures and the failing questions per format, with what was shown) are
written to --results every --every questions and at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The answer path under test: PYTHONPATH first (another branch), else this checkout.
sys.path.append(str(HERE.parent))
sys.path.insert(0, str(HERE))

import answer_checks as checks  # noqa: E402
from answer_corpus import FORMATS, Corpus, Question, build  # noqa: E402

from agent.models import CATALOG, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, ensure_model  # noqa: E402
from node.home import Home  # noqa: E402
from node.node import Node  # noqa: E402

PASSPHRASE = "answer bench passphrase"
RECALL_K = (1, 3, 5)


@dataclass
class Result:
    question: Question
    mode: str
    model: str
    text: str = ""
    seconds: float = 0.0
    grounded: bool | None = None  # what the answer says of itself (None: the code has no such flag)
    right: bool = False
    right_unquoted: bool = False
    right_shown: bool = False  # gold in the answer with its quotes, as every channel shows it
    abstained: bool = False
    unsupported: list = field(default_factory=list)
    sources: list = field(default_factory=list)  # (number, path, quote) of the answer's sources
    gold_cited: bool = False
    dropped: list = field(
        default_factory=list
    )  # (sentence, held by our checker?) the node's verifier refused
    error: str = ""


# --- the node and the answer path -------------------------------------------------------------


def models_dir() -> Path:
    folder = Path(os.environ.get("FLURRY_MODELS") or Path.home() / ".cache" / "flurry-test-models")
    for name in (DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL):
        ensure_model(CATALOG[name], folder, say=lambda line: None)
    os.environ["FLURRY_MODELS"] = str(folder)
    return folder


def open_node(home: Home, chat_model: str) -> Node:
    home.save_config(dataclasses.replace(home.load_config(), chat_model=chat_model))
    return Node.open(home, PASSPHRASE, say=lambda line: None)


def fill(node: Node, corpus: Corpus, folder: Path, formats: frozenset[str] | None) -> float:
    started = time.perf_counter()
    corpus.write(folder, formats)
    if any(folder.iterdir()):
        node.add(str(folder))
    if formats is None or "pod" in formats:
        corpus.put_pod(node)
    node.indexes.save()
    return time.perf_counter() - started


def modes_available(node: Node) -> dict[str, str]:
    """mode → how it is asked for: the code under test may or may not have grounded answers yet."""
    if "grounded" in inspect.signature(node.conversation).parameters:
        return {
            "grounded": "node.conversation(grounded=True)",
            "free": "node.conversation(grounded=False)",
        }
    from agent.answer import Conversation

    if "grounded" in inspect.signature(Conversation).parameters:
        return {
            "grounded": "node.conversation() (grounded by default)",
            "free": "conversation.grounded = False",
        }
    return {"free": "node.conversation() (no grounded answers in this code)"}


def conversation(node: Node, mode: str, how: dict[str, str]):
    if how[mode].startswith("node.conversation(grounded="):
        return node.conversation(grounded=(mode == "grounded"))
    conv = node.conversation()
    if mode == "free" and "grounded" in how["free"]:
        conv.grounded = False
    return conv


def is_gold(source, q: Question) -> bool:
    suffix, marker = q.where
    # A record inside a file is shown as "archive.mbox#2": the file is what the suffix names.
    return (
        bool(suffix) and str(source.path).split("#")[0].endswith(suffix) and marker in source.text
    )


def ask(node: Node, q: Question, mode: str, how: dict[str, str], model: str) -> Result:
    r = Result(q, mode, model)
    started = time.perf_counter()
    try:
        answer = conversation(node, mode, how).ask(q.text)
        answer.read()
    except Exception as e:  # one failing question must not end the run; it is reported
        r.seconds, r.error = time.perf_counter() - started, f"{type(e).__name__}: {e}"
        return r
    r.seconds = time.perf_counter() - started
    r.text = answer.text
    r.grounded = getattr(answer, "grounded", None)
    sources = list(answer.sources)
    r.sources = [(s.number, s.path, getattr(s, "quote", "")) for s in sources]
    r.right = q.answerable and checks.is_right(r.text, q.gold)
    r.right_unquoted = q.answerable and checks.is_right(checks.without_quotes(r.text), q.gold)
    # The CLI and the TUI print each cited source's quote under the answer, and peers receive
    # them appended (``with_quotes_text``): what a person reads is the answer and its quotes.
    shown = r.text + "\n" + "\n".join(getattr(s, "quote", "") for s in sources)
    r.right_shown = q.answerable and checks.is_right(shown, q.gold)
    r.abstained = checks.abstains(r.text)
    r.unsupported = checks.unsupported(r.text, sources, q.text)
    # The sentences the node's verifier refused, and whether our checker would have held them
    # against the same sources: a refusal our checker finds supported may be the verifier's mistake.
    r.dropped = [
        (d, not checks.unsupported(d, sources, q.text))
        for d in getattr(answer, "dropped", []) or []
    ]
    # Cited: a grounded answer's sources with a quote (the ones it rests on); a free answer's sources.
    quoted = [s for s in sources if getattr(s, "quote", "")]
    r.gold_cited = q.answerable and any(
        is_gold(s, q) for s in (quoted if r.grounded is not None else sources)
    )
    return r


def recall(node: Node, questions: list[Question]) -> dict[str, int | None]:
    """question text → rank (1-based) of its gold record among the best max(RECALL_K) chunks, None if absent."""
    ranks = {}
    for q in questions:
        if not q.answerable:
            continue
        found = node.retrieve(q.text, max(RECALL_K))
        ranks[q.text] = next((i for i, s in enumerate(found, start=1) if is_gold(s, q)), None)
    return ranks


# --- the figures ------------------------------------------------------------------------------


def ratio(part: int, whole: int) -> str:
    return f"{part / whole:.2f} ({part}/{whole})" if whole else "–"


def summary(results: list[Result]) -> dict:
    yes = [r for r in results if r.question.answerable]
    no = [r for r in results if not r.question.answerable]
    times = [r.seconds for r in results if not r.error]
    return {
        "accuracy": ratio(sum(r.right for r in yes), len(yes)),
        "accuracy_unquoted": ratio(sum(r.right_unquoted for r in yes), len(yes)),
        "accuracy_with_quotes": ratio(sum(r.right_shown for r in yes), len(yes)),
        "abstention": ratio(sum(r.abstained for r in no), len(no)),
        "false_abstention": ratio(sum(r.abstained and not r.right for r in yes), len(yes)),
        "answers_with_unsupported": ratio(sum(bool(r.unsupported) for r in results), len(results)),
        "unsupported_sentences": sum(len(r.unsupported) for r in results),
        "gold_cited": ratio(sum(r.gold_cited for r in yes), len(yes)),
        "grounded_flag_true": ratio(sum(r.grounded is True for r in results), len(results))
        if any(r.grounded is not None for r in results)
        else "–",
        "dropped_by_verifier": sum(len(r.dropped) for r in results),
        "dropped_but_supported": sum(ok for r in results for _, ok in r.dropped),
        "median_s": round(statistics.median(times), 2) if times else None,
        "errors": sum(bool(r.error) for r in results),
    }


def cost(results: list[Result], model: str) -> str:
    g = {
        r.question.text: r.seconds
        for r in results
        if r.model == model and r.mode == "grounded" and not r.error
    }
    f = {
        r.question.text: r.seconds
        for r in results
        if r.model == model and r.mode == "free" and not r.error
    }
    both = sorted(set(g) & set(f))
    if not both:
        return "–"
    mg, mf = statistics.median(g[q] for q in both), statistics.median(f[q] for q in both)
    return f"{mg / mf:.2f} ({mg:.2f} s ÷ {mf:.2f} s, {len(both)} questions)"


def recall_line(ranks: dict[str, int | None], questions: list[Question]) -> str:
    wanted = [q.text for q in questions if q.answerable and q.text in ranks]
    if not wanted:
        return "–"
    return ", ".join(
        f"@{k} {sum(1 for t in wanted if (rank := ranks[t]) is not None and rank <= k) / len(wanted):.2f}"
        for k in RECALL_K
    )


def report(results: list[Result], ranks: dict, run: dict, done: bool) -> str:
    lines = [f"# Answer benchmark — {'final' if done else 'interim'} results", ""]
    lines += [f"- {k}: {v}" for k, v in run.items()]
    lines += [f"- questions answered so far: {len({r.question.text for r in results})}", ""]
    models = list(dict.fromkeys(r.model for r in results))
    modes = list(dict.fromkeys(r.mode for r in results))
    keys = [
        "accuracy",
        "accuracy_unquoted",
        "accuracy_with_quotes",
        "abstention",
        "false_abstention",
        "answers_with_unsupported",
        "unsupported_sentences",
        "gold_cited",
        "grounded_flag_true",
        "dropped_by_verifier",
        "dropped_but_supported",
        "median_s",
        "errors",
    ]
    lines += [
        "## Summary",
        "",
        "| model | mode | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for model in models:
        for mode in modes:
            rs = [r for r in results if r.model == model and r.mode == mode]
            if rs:
                s = summary(rs)
                lines.append(f"| {model} | {mode} | " + " | ".join(str(s[k]) for k in keys) + " |")
    lines.append("")
    for model in models:
        lines.append(f"- cost ({model}): grounded ÷ free median time = {cost(results, model)}")
    asked = list({r.question.text: r.question for r in results}.values())
    lines += [f"- retrieval recall (gold record in the top k): {recall_line(ranks, asked)}", ""]

    lines += [
        "## Per format",
        "",
        "| model | mode | format | accuracy | abstention | unsupported answers | recall@3 | median s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        for mode in modes:
            for fmt in FORMATS:
                rs = [
                    r
                    for r in results
                    if r.model == model and r.mode == mode and r.question.fmt == fmt
                ]
                if not rs:
                    continue
                s = summary(rs)
                qs = [r.question for r in rs]
                r3 = recall_line(ranks, qs).split(", ")[1] if recall_line(ranks, qs) != "–" else "–"
                lines.append(
                    f"| {model} | {mode} | {fmt} | {s['accuracy']} | {s['abstention']} | "
                    f"{s['answers_with_unsupported']} | {r3.removeprefix('@3 ')} | {s['median_s']} |"
                )
    lines += [
        "",
        "## Failures per format",
        "",
        "Wrong: an answerable question without its gold string; missed abstention: an unanswerable one answered; "
        "unsupported: sentences whose claims their cited evidence does not hold. `rank` is the gold record's rank in "
        f"retrieval (None: not in the top {max(RECALL_K)}).",
        "",
    ]
    for fmt in FORMATS:
        failing = [
            r
            for r in results
            if r.question.fmt == fmt
            and (
                (r.question.answerable and not r.right)
                or (not r.question.answerable and not r.abstained)
                or r.unsupported
                or r.error
            )
        ]
        if not failing:
            continue
        lines += [f"### {fmt}", ""]
        for r in failing:
            q = r.question
            what = []
            if r.error:
                what.append(f"ERROR {r.error}")
            if q.answerable and not r.right:
                what.append(
                    f"wrong (gold {q.gold[0]!r}, rank {ranks.get(q.text)}{', gold cited' if r.gold_cited else ''})"
                )
            if not q.answerable and not r.abstained:
                what.append("missed abstention")
            if r.unsupported:
                what.append(
                    "unsupported: "
                    + "; ".join(
                        f"{', '.join(f'{c.kind} {c.text!r}' for c in u.claims)}"
                        for u in r.unsupported
                    )
                )
            shown = " ".join(r.text.split())
            lines.append(f"- [{r.model} / {r.mode}] **{q.text}** — {' — '.join(what)}  ")
            lines.append(f"  shown: {shown[:400]!r}  ")
            quotes = [
                f"[{n}] {Path(str(p)).name}: {quote[:160]!r}" for n, p, quote in r.sources if quote
            ]
            sources = [f"[{n}] {Path(str(p)).name}" for n, p, _ in r.sources]
            lines.append(
                f"  sources: {', '.join(sources) or '(none)'}"
                + (f"; quotes: {' | '.join(quotes)}" if quotes else "")
                + "  "
            )
            for sentence, ok in r.dropped:
                lines.append(
                    f"  dropped by the verifier{' (our checker finds it supported)' if ok else ''}: {sentence[:200]!r}  "
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # whoever reads it sees a whole file


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--limit", type=int, help="ask at most N questions, spread over the formats")
    p.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the first N questions of the --limit order (the next slice)",
    )
    p.add_argument("--formats", help=f"comma-separated subset of {','.join(FORMATS)}")
    p.add_argument(
        "--models",
        default=DEFAULT_CHAT_MODEL,
        help="comma-separated chat models: catalog names or GGUF paths",
    )
    p.add_argument(
        "--modes", default="grounded,free", help="grounded, free or both (the ones the code has)"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--results", default="/tmp/answerbench-results.md")
    p.add_argument("--json", help="also write every answer here")
    p.add_argument("--every", type=int, default=10, help="write interim results every N questions")
    p.add_argument(
        "--free-every",
        type=int,
        default=1,
        metavar="N",
        help="ask the free (baseline) path only every Nth question: a free answer runs to 256 tokens, "
        "several times a grounded one; cost is then measured on those questions",
    )
    args = p.parse_args()

    formats = frozenset(args.formats.split(",")) if args.formats else None
    if formats and not formats <= set(FORMATS):
        p.error(f"unknown formats {sorted(formats - set(FORMATS))}; known: {', '.join(FORMATS)}")
    corpus = build(args.seed)
    questions = corpus.select(formats, None if args.limit is None else args.skip + args.limit)[
        args.skip :
    ]
    models = args.models.split(",")
    results_path = Path(args.results)

    models_dir()
    os.environ.setdefault(
        "FLURRY_RUNTIME_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    )
    scratch = Path(tempfile.mkdtemp(prefix="flurry-answerbench-"))
    home = Home(scratch / "home")
    Node.init(home, PASSPHRASE)
    node = open_node(home, models[0])
    try:
        added = fill(node, corpus, scratch / "data", formats)
        ranks = recall(node, questions)
        how = modes_available(node)
        modes = [m for m in args.modes.split(",") if m in how]
        code = subprocess.run(
            ["git", "-C", str(Path(inspect.getfile(Node)).parent), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        run = {
            "answer path under test": f"{Path(inspect.getfile(Node)).parents[1]} ({code})",
            "modes": ", ".join(f"{m}: {how[m]}" for m in modes),
            "models": ", ".join(models),
            "free path asked": "every question"
            if args.free_every == 1
            else f"every {args.free_every}th question",
            "corpus": f"seed {args.seed}, {len(questions)} questions ({sum(q.answerable for q in questions)} answerable), "
            f"formats {', '.join(sorted(formats)) if formats else 'all'}; added in {added:.1f} s",
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        print("\n".join(f"{k}: {v}" for k, v in run.items()), flush=True)
        results: list[Result] = []
        for m_index, model in enumerate(models):
            if m_index:
                node.close()
                node = open_node(home, model)
            label = Path(model).name if os.sep in model else model
            node.chat_model  # load it outside the timings  # noqa: B018
            for i, q in enumerate(questions, start=1):
                # Alternate which mode goes first: this machine's speed drifts within a minute.
                order = modes if i % 2 else modes[::-1]
                if len(modes) > 1 and (i - 1) % args.free_every:
                    order = [m for m in order if m != "free"]
                line = []
                for mode in order:
                    r = ask(node, q, mode, how, label)
                    results.append(r)
                    mark = (
                        "ERR"
                        if r.error
                        else ("ok" if r.right else "abst" if r.abstained else "--")
                        if q.answerable
                        else ("abst" if r.abstained else "ANSWERED")
                    )
                    line.append(
                        f"{mode} {mark}{' UNSUPPORTED' if r.unsupported else ''} {r.seconds:.1f}s"
                    )
                print(
                    f"[{label} {i}/{len(questions)}] {q.fmt:8} {' | '.join(line)} — {q.text}",
                    flush=True,
                )
                if i % args.every == 0:
                    write(results_path, report(results, ranks, run, done=False))
        text = report(results, ranks, run, done=True)
        write(results_path, text)
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    [
                        {
                            **{
                                k: v
                                for k, v in dataclasses.asdict(r).items()
                                if k not in ("question", "unsupported")
                            },
                            "question": dataclasses.asdict(r.question),
                            "unsupported": [
                                {
                                    "sentence": u.sentence,
                                    "claims": [dataclasses.asdict(c) for c in u.claims],
                                }
                                for u in r.unsupported
                            ],
                        }
                        for r in results
                    ],
                    indent=1,
                    default=str,
                )
            )
        print(text.split("## Failures")[0])
        print(f"(failures per format in {results_path})")
    finally:
        node.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
