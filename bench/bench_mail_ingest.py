"""Mail ingested per minute: fetched from an IMAP server on loopback, stored and handed on,
against `flurry add` of the same mails written as .eml files, in one run.

    python bench/bench_mail_ingest.py [COUNT] [--triage | --callback MODULE:FACTORY]  (default 200)

Both sides start from a fresh home with the embedding model loaded, and both store the same
messages the same way (store.parsers.mail in a parser process, chunks embedded, sealed in
the vault, indexed); the mail side also fetches each message over IMAP (pymap, in this
process: tests/mail_servers.py), asks its size first, checks its Message-ID against those
seen, builds its ``Incoming`` and hands it to a callback. The ratio is mail rate ÷ add rate
(issue 17's goal: ≥ 0.8 with triage counted in).

``--callback MODULE:FACTORY``: FACTORY(node) returns the ``on_message`` the fetched mail is
handed to (the inbox agent's triage), so its time counts on the mail side; without it a
callback that only collects the messages is used.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import new_node  # noqa: E402
from mail_servers import HOST, PASSWORD, USER, MailServers  # noqa: E402

from agent.incoming import Incoming  # noqa: E402
from agent.models import CATALOG, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, ensure_model  # noqa: E402
from node.mail_account import MailAccount, MailFetcher  # noqa: E402

TOPICS = [
    (
        "the boiler service",
        "The engineer comes on {day} to service the boiler; leave the side gate open.",
    ),
    (
        "the school trip",
        "The school trip to the {place} museum costs {n} euros; the form is due {day}.",
    ),
    (
        "the book club",
        "This month the book club reads a novel about {place}; we meet on {day} at {n}.",
    ),
    (
        "the invoice",
        "Invoice {n} for the roof repair is due on {day}; pay by bank transfer, reference {n}.",
    ),
    (
        "the allotment",
        "The allotment committee meets on {day}; bring {n} seed packets for the {place} swap.",
    ),
]
PLACES = ["Porto", "Ghent", "Bergen", "Lyon", "Graz", "Turku", "Cork", "Split"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def messages(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        subject, body = TOPICS[i % len(TOPICS)]
        text = body.format(day=DAYS[i % len(DAYS)], place=PLACES[i % len(PLACES)], n=100 + i)
        text = f"Hello,\n\n{text}\n\n" + "Some more words about the week and the weather. " * 6
        out.append(
            (
                f"From: Sender {i} <sender{i}@example.org>\r\nTo: {USER}\r\n"
                f"Subject: About {subject} ({i})\r\nDate: Tue, 01 Dec 2026 10:{i % 60:02d}:00 +0000\r\n"
                f"Message-ID: <bench-{i}@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                f"{text}\r\n"
            ).encode()
        )
    return out


def load_factory(spec: str) -> Callable:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(count: int, callback: str | None, triage: bool = False) -> None:
    models = Path(
        os.environ.get("FLURRY_TEST_MODELS") or Path.home() / ".cache" / "flurry-test-models"
    )
    for name in (DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL):
        ensure_model(CATALOG[name], models, say=lambda line: None)
    mails = messages(count)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        # baseline: `flurry add` (the node's add path) of the mails as .eml files
        folder = root / "eml"
        folder.mkdir()
        for i, raw in enumerate(mails):
            (folder / f"{i:05d}.eml").write_bytes(raw)
        node = new_node(root / "a", models)
        node.embedder.embed(["warm up"])
        started = time.perf_counter()
        report = node.add(str(folder))
        add_seconds = time.perf_counter() - started
        assert len(report.added) == count, report
        node.close()

        # mail: fetched from the IMAP server, stored, handed on
        servers = MailServers(root / "servers")
        try:
            for raw in mails:
                servers.deliver(raw)
            node = new_node(root / "b", models)
            node.embedder.embed(["warm up"])
            handed: list[Incoming] = []
            if triage:
                # The inbox agent's triage as `flurry serve` runs it: the policy decides and the
                # item is kept; the model reads it after, in the background (timed apart below).
                node.inbox.defer_reading()
                on_message = node.inbox.on_message
            else:
                on_message = load_factory(callback)(node) if callback else handed.append
            account = MailAccount(
                name=USER,
                imap_host=HOST,
                imap_port=servers.imap_port,
                user=USER,
                password=PASSWORD,
                address=USER,
                tls="none-loopback-only",
            )
            started = time.perf_counter()
            fetched = MailFetcher(node, account, on_message).fetch()
            node.indexes.save()
            mail_seconds = time.perf_counter() - started
            assert fetched.fetched == count, fetched
            assert callback or triage or len(handed) == count
            read_seconds = 0.0
            if triage:
                assert len(node.inbox.items()) == count
                started = time.perf_counter()
                node.inbox.read_in_background()
                assert node.inbox.wait_read(3600)
                read_seconds = time.perf_counter() - started
                node.inbox.stop_reading()
            node.close()
        finally:
            servers.stop()

    add_rate = count / add_seconds * 60
    mail_rate = count / mail_seconds * 60
    print(f"flurry add of {count} .eml files:      {add_rate:8.0f} mails/min (baseline)")
    print(
        f"IMAP fetch + ingest + hand-on{' + callback' if callback else ''}"
        f"{' + triage' if triage else ''}: "
        f"{mail_rate:8.0f} mails/min  = {mail_rate / add_rate:.2f}x the baseline"
    )
    if read_seconds:
        read_rate = count / read_seconds * 60
        print(
            f"then read by the model (a summary each, no rule: the default draft): "
            f"{read_rate:8.0f} mails/min  = {read_rate / add_rate:.2f}x the baseline"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=200)
    parser.add_argument("--callback", help="MODULE:FACTORY; FACTORY(node) returns on_message")
    parser.add_argument("--triage", action="store_true", help="hand each mail to the inbox agent")
    args = parser.parse_args()
    main(args.count, args.callback, args.triage)
