"""Issue 12, item 6: files that make a parser work for minutes, and a peer who writes to the pod
to keep the model busy. Played against the real ingestion pipeline (parser processes, the real
embedding model, the real vault) and a real node behind uvicorn on loopback.

No assertion here is about time: a bomb is shown harmless by the outcome the budgets give it
(a skip with its reason, content capped, a question answered while indexing still waits).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import zlib
from pathlib import Path

import pytest
from conftest import new_node
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from format_samples import email, mbox

from agent.grants import Grant, Quota
from agent.queue import ModelQueue
from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.signing_client import signed_client
from store.ingest import Ingestor
from store.parse_process import Budget
from store.parsers import calendar
from store.parsers.registry import CALENDAR
from store.pod_index import POD_BUDGET, document_key
from store.rdf import TURTLE, rdf_text

# --- the bombs ------------------------------------------------------------------------------------


def secondly_calendar(size: int = 9 * 1024) -> bytes:
    """About ``size`` bytes of events that repeat every second since 1970."""
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bomb//EN\r\n"
    events: list[str] = []
    while len(head) + sum(map(len, events)) < size - 120:
        n = len(events)
        events.append(
            f"BEGIN:VEVENT\r\nUID:tick-{n}@bomb\r\nDTSTART:19700101T000000Z\r\nSUMMARY:tick {n}\r\nRRULE:FREQ=SECONDLY\r\nEND:VEVENT\r\n"
        )
    return (head + "".join(events) + "END:VCALENDAR\r\n").encode()


def never_matching_calendar(events: int = 20) -> bytes:
    """Rules whose filters match no day at all: dateutil walks day by day to the year 9999
    looking for one (seconds per event), which no bound on occurrences can stop."""
    body = "".join(
        f"BEGIN:VEVENT\r\nUID:never-{n}@bomb\r\nDTSTART:20200101T090000Z\r\nSUMMARY:never {n}\r\n"
        "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30\r\nEND:VEVENT\r\n"
        for n in range(events)
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}END:VCALENDAR\r\n".encode()


def nested_html(depth: int = 20_000) -> bytes:
    return f"<html><body>{'<div>' * depth}the treasure is under the old fig tree{'</div>' * depth}</body></html>".encode()


def pdf_with_one_huge_stream(megabytes: int = 60) -> bytes:
    """One page whose content stream is ``megabytes`` of text-drawing instructions, compressed
    to some 90 KB (zlib): pypdf reads them all, in pure Python."""
    instructions = b"BT /F1 11 Tf 60 780 Td " + b"(x) Tj " * (megabytes * 1024 * 1024 // 7) + b"ET"
    stream = zlib.compress(instructions, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(
        b"%010d 00000 n \n" % o for o in offsets
    )
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def contacts_turtle(people: int, words: int = 100, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    vocabulary = "harbour lantern copper meadow violin orchard pebble saffron thunder velvet walnut zephyr".split()
    lines = ["@prefix vcard: <http://www.w3.org/2006/vcard/ns#> ."]
    for n in range(people):
        note = " ".join(rng.choice(vocabulary) for _ in range(words))
        lines.append(f'<#p{n}> a vcard:Individual ; vcard:fn "Person {n}" ; vcard:note "{note}" .')
    return "\n".join(lines).encode()


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory, models_dir):
    node = new_node(tmp_path_factory.mktemp("bombs"), models_dir)
    yield node
    node.close()


def stored(node, path: Path) -> bool:
    return any(d.abs_path.startswith(str(path)) for d in node.vault.documents())


def add(node, folder: Path, **options):
    """What `flurry add` does, with the budget given (the default one otherwise)."""
    ingestor = Ingestor(node.vault, node.indexes, node.embedder.embed, **options)
    try:
        return ingestor.add(str(folder))
    finally:
        node.indexes.save()


class Peer:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.did = did_key_from_ed25519_public(self.key.public_key().public_bytes_raw())

    def client(self, url: str):
        return signed_client(self.key, verification_method_id(self.did), base_url=url, timeout=300)


# --- parsers: each bomb, and the budgets that stop what the parsers cannot ------------------------


def test_a_calendar_of_secondly_rules_is_read_without_walking_its_instances(node, tmp_path):
    bomb = secondly_calendar()
    assert 8 * 1024 < len(bomb) <= 9 * 1024
    (tmp_path / "ticks.ics").write_bytes(bomb)
    report = add(node, tmp_path)
    # Stopped by nothing: it is read whole, within the default budget (20 s), and kept.
    assert report.added == [str(tmp_path / "ticks.ics")] and not report.skipped, report
    sections = CALENDAR.run(bomb)[0].sections
    events = bomb.count(b"BEGIN:VEVENT")
    assert len(sections) == events and all("Repeats: FREQ=SECONDLY" in s.text for s in sections)
    # The work is bounded per calendar, not per event: only as many rules are walked as the
    # calendar's budget pays for (two days of seconds each); the others say how they repeat.
    expanded = [s for s in sections if "next" in s.meta]
    assert 1 <= len(expanded) <= calendar.MAX_WORK // (2 * 86400) < events
    now = dt.datetime.now(dt.UTC)
    assert all(
        dt.datetime.fromisoformat(s.meta["next"][0]) >= now - dt.timedelta(minutes=5)
        for s in expanded
    )


def test_twenty_thousand_nested_elements_are_read_in_one_walk(node, tmp_path):
    (tmp_path / "deep.html").write_bytes(nested_html())
    report = add(node, tmp_path)
    assert report.added == [str(tmp_path / "deep.html")] and not report.skipped, report
    found = node.retrieve("where is the treasure? the old fig tree", 3)
    assert any("under the old fig tree" in s.text for s in found)


def test_a_pdf_page_of_one_huge_compressed_stream_is_not_read(node, tmp_path):
    bomb = pdf_with_one_huge_stream()
    assert len(bomb) < 200_000  # some 90 KB that inflate to 60 MB
    (tmp_path / "bomb.pdf").write_bytes(bomb)
    report = add(node, tmp_path)
    assert [s.reason for s in report.skipped] == [
        "page 1 holds more than 1 MiB of drawing instructions; its text was not read"
    ]
    assert not stored(node, tmp_path / "bomb.pdf")


def test_a_parser_past_its_time_budget_is_stopped_and_the_next_file_is_read(node, tmp_path):
    (tmp_path / "a-never.ics").write_bytes(never_matching_calendar())
    (tmp_path / "b-note.md").write_text(
        "# Bicycle\n\nThe bicycle lock code is four seven one two.\n"
    )
    report = add(node, tmp_path, budget=Budget(seconds=3, seconds_per_mib=0))
    assert [(Path(s.path).name, s.reason) for s in report.skipped] == [
        ("a-never.ics", "took longer than 3 s to read; stopped and skipped")
    ]
    assert report.added == [str(tmp_path / "b-note.md")]  # a fresh parser process read it
    assert not stored(node, tmp_path / "a-never.ics")


def test_a_file_over_its_output_budget_is_skipped_whole(node, tmp_path):
    messages = [
        email(
            f"Sender {n} <s{n}@example.org>",
            "me@example.org",
            "Mon, 02 Feb 2026 18:00:00 +0000",
            f"Letter {n}",
            " ".join(["the quarterly report on the harbour lanterns"] * 60),
            f"m{n}@example.org",
        )
        for n in range(40)
    ]
    (tmp_path / "archive.mbox").write_text(mbox(messages))
    report = add(node, tmp_path, budget=Budget(max_chunks=50))
    assert [s.reason for s in report.skipped] == [
        "more than 50 chunks of text; skipped, nothing of it stored"
    ]
    assert not stored(node, tmp_path / "archive.mbox")  # not one of its messages either
    report = add(node, tmp_path)  # within the default budget it is read
    assert report.added == [str(tmp_path / "archive.mbox")] and not report.skipped


# --- the pod: a peer's writes do not hold the model, and are counted ------------------------------


def test_the_model_queue_serves_questions_before_background_work():
    # The work is plain functions, not the model: what is tested is the order the queue keeps.
    queue, ran, gate = ModelQueue(max_waiting=2), [], threading.Event()

    def work(name, wait=False):
        def run():
            if wait:
                gate.wait(30)
            ran.append(name)
            return iter(())

        return run

    try:
        first = queue.submit(
            work("background 1", wait=True), background=True
        )  # running: holds the worker
        later = [queue.submit(work(f"background {n}"), background=True) for n in (2, 3, 4)]
        assert first.started.wait(30)
        question = queue.submit(work("question"))
        assert (
            question.position == 1 and later[0].position == 2
        )  # ahead of every waiting background job
        # Background work is not counted against the questions' bound.
        assert queue.submit(work("question 2")).position == 2
        gate.set()
        for job in (first, question, *later):
            list(job)
        assert ran[:3] == ["background 1", "question", "question 2"] and ran[3:] == [
            "background 2",
            "background 3",
            "background 4",
        ]
    finally:
        queue.close()


def test_a_peers_big_turtle_write_does_not_hold_up_the_owners_question(node, served, owner):
    peer = Peer()
    node.grants.add(
        Grant(
            peer.did,
            frozenset(),
            pod={"/pod/shared/": frozenset({"write"})},
            pod_writes=Quota(3, "hour"),
        )
    )
    path, url = "/pod/shared/people", f"{served.url}/pod/shared/people"
    big = contacts_turtle(people=500)  # some 400 chunks: fifty background jobs of embedding
    assert owner.put("/pod/shared/", headers={"Content-Type": TURTLE}).status_code == 201
    with peer.client(served.url) as client:
        made = client.put(path, content=big, headers={"Content-Type": TURTLE})
        assert made.status_code == 201, made.text
        assert node.pod_indexer.outcome(path) in (
            "pending",
            "indexing",
        )  # the write did not wait for it

        # The owner asks while that indexing has barely begun: the question goes first.
        asked = owner.post(
            "/api/ask", json={"question": "What did I decide about the kitchen?", "k": 3}
        )
        assert asked.status_code == 200, asked.text
        assert any(
            json.loads(line)["type"] == "done" for line in asked.text.splitlines() if line.strip()
        )
        assert node.pod_indexer.outcome(path) in ("pending", "indexing")
        assert document_key(path) not in {d.abs_path for d in node.vault.documents()}

        # A newer version replaces it: what was being indexed of the old one is dropped.
        small = contacts_turtle(people=3, words=12, seed=2)
        assert client.put(path, content=small, headers={"Content-Type": TURTLE}).status_code == 204
        assert node.pod_indexer.settle(timeout=300)
        assert node.pod_indexer.history(path)[-2:] == [
            "cancelled: a newer version was written",
            "indexed",
        ]
        assert node.vault.is_unchanged(
            document_key(path), f"{path}\n{rdf_text(small, TURTLE, url)}".encode(), ("pod",)
        )

        # Three writes an hour: the fourth is refused, with when to come back.
        assert (
            client.put(
                "/pod/shared/third", content=small, headers={"Content-Type": TURTLE}
            ).status_code
            == 201
        )
        refused = client.put("/pod/shared/fourth", content=small, headers={"Content-Type": TURTLE})
        assert refused.status_code == 429, refused.text
        assert (
            "3 writes per hour" in refused.json()["detail"]
            and 0 < int(refused.headers["Retry-After"]) <= 3600
        )
        assert owner.get("/pod/shared/fourth").status_code == 404  # nothing of it was stored
    # The owner has no quota.
    assert (
        owner.put("/pod/shared/fourth", content=small, headers={"Content-Type": TURTLE}).status_code
        == 201
    )
    assert node.pod_indexer.settle(timeout=300)


def test_a_peers_writes_are_counted_in_bytes_too(node, served, owner):
    peer = Peer()
    assert owner.put("/pod/drop/", headers={"Content-Type": TURTLE}).status_code == 201
    node.grants.add(
        Grant(
            peer.did,
            frozenset(),
            pod={"/pod/drop/": frozenset({"write"})},
            pod_bytes=Quota(1000, "day"),
        )
    )
    with peer.client(served.url) as client:
        assert (
            client.put(
                "/pod/drop/a", content=b"x" * 600, headers={"Content-Type": "text/plain"}
            ).status_code
            == 201
        )
        refused = client.put(
            "/pod/drop/b", content=b"y" * 600, headers={"Content-Type": "text/plain"}
        )
        assert refused.status_code == 429 and "1000 bytes per day" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        assert (
            client.put(
                "/pod/drop/c", content=b"z" * 300, headers={"Content-Type": "text/plain"}
            ).status_code
            == 201
        )


def test_a_resource_over_the_index_budget_is_stored_but_not_indexed(node, served, owner):
    peer = Peer()
    assert owner.put("/pod/big/", headers={"Content-Type": TURTLE}).status_code == 201
    node.grants.add(Grant(peer.did, frozenset(), pod={"/pod/big/": frozenset({"write"})}))
    path = "/pod/big/everyone"
    with peer.client(served.url) as client:
        assert (
            client.put(
                path, content=contacts_turtle(people=2, words=10), headers={"Content-Type": TURTLE}
            ).status_code
            == 201
        )
        assert node.pod_indexer.settle(timeout=300) and node.pod_indexer.outcome(path) == "indexed"
        huge = contacts_turtle(people=1500)  # more chunks than a resource may have
        assert client.put(path, content=huge, headers={"Content-Type": TURTLE}).status_code == 204
    assert (
        owner.get(path, headers={"Accept": TURTLE}).content == huge
    )  # the peer's data is kept as written
    assert node.pod_indexer.settle(timeout=300)
    assert (
        node.pod_indexer.outcome(path)
        == f"not indexed: more than {POD_BUDGET.max_chunks} chunks of text; skipped, nothing of it stored"
    )
    assert document_key(path) not in {
        d.abs_path for d in node.vault.documents()
    }  # nor the older version
