"""Every format flurry reads, end to end: a realistic sample per format, a question whose
answer lives in one record of it, and a check that retrieval cites that record first, with
the metadata a citation shows (an email's sender and subject, an event's start, a page).
Then the bad input people have: each is skipped with a clear reason and loses nothing."""

from __future__ import annotations

import json
import os
import queue
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, Flurry, FlurryInProcess
from format_samples import MBOX_MESSAGES, email, make_pdf, mbox, write_all

from store.ingest import Ingestor, discover, parse
from store.parse_process import chunks_of
from store.parsers import Skip
from store.parsers.registry import parser_for
from store.sealing import Sealer
from store.vault import Vault, VaultError

# (question, sample, what the first source's path ends with, metadata it must carry)
QUESTIONS = [
    (
        "What will my mortgage rate be from April?",
        "eml",
        "bank.eml",
        {
            "kind": "email",
            "from": "Banco Atlântico <avisos@bancoatlantico.pt>",
            "subject": "Your mortgage rate changes in April",
        },
    ),
    (
        "How much is the chess club membership fee?",
        "mbox",
        "friends.mbox#2",
        {
            "kind": "email",
            "from": "Clube de Xadrez <clube@example.org>",
            "date": "2026-02-04T10:00:00+00:00",
        },
    ),
    (
        "When is the school trip to the Oceanário?",
        "maildir",
        "1709000000.M1P1.host:2,S",
        {"kind": "email", "subject": "School trip permission slip"},
    ),
    (
        "When is Luna the cat's appointment at the vet?",
        "ics",
        "family.ics",
        {
            "kind": "event",
            "start": "2026-04-16T15:30:00+01:00",
            "location": "Clínica Veterinária do Bairro, Rua das Flores 12",
        },
    ),
    (
        "What is Joana Ferreira's phone number?",
        "vcf",
        "contacts.vcf",
        {"kind": "contact", "name": "Joana Ferreira"},
    ),
    (
        "Where is dinner with Sofia booked?",
        "whatsapp",
        "WhatsApp Chat with Sofia.txt",
        {"kind": "chat", "chat": "Sofia", "date": "2026-03-12T09:15:00"},
    ),
    (
        "What time does the climbing wall open now?",
        "telegram",
        "result.json",
        {"kind": "chat", "chat": "Climbing group", "date": "2026-03-20T19:00:00"},
    ),
    (
        "How do I descale the espresso machine?",
        "html",
        "descale.html",
        {"title": "How to descale an espresso machine"},
    ),
    (
        "How much does the sailing course cost?",
        "obsidian",
        "Sailing course.md",
        {"heading": "Sailing course"},
    ),
    (
        "When are the off-peak hours of the electricity tariff?",
        "pdf",
        "electricity.pdf",
        {"page": 2},
    ),
]


def _bad_files(root: Path) -> dict[str, str]:
    """Broken input beside the good, each with (part of) the reason it must be skipped for."""
    bad = root / "bad"
    bad.mkdir()
    (bad / "scan.pdf").write_bytes(make_pdf([[]]))  # a PDF without a text layer
    (bad / "corrupt.pdf").write_bytes(
        b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer garbage"
    )
    (bad / "latin1.txt").write_bytes("Crème brûlée recipe".encode("latin-1"))
    (bad / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with open(bad / "huge.txt", "wb") as f:  # 2 GiB, sparse: refused from stat() before reading
        f.truncate(2 * 1024**3)
    (bad / "broken.ics").write_bytes(
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:2026-13-45\r\n broken line\r\nEND:VCALENDAR\r\n"
    )
    (bad / "broken.vcf").write_bytes(b"BEGIN:VCARD\r\nthis is not a property\r\n")
    (bad / "config.json").write_text('{"theme": "dark"}')
    (bad / "notes.eml").write_text("just some words, no headers at all\n")
    os.mkfifo(bad / "pipe.md")
    return {
        "scan.pdf": "no text layer",
        "corrupt.pdf": "PDF",
        "latin1.txt": "not UTF-8",
        "photo.txt": "binary file",
        "huge.txt": "too large (2.0 GiB",
        "broken.ics": "calendar",
        "broken.vcf": "contacts",
        "config.json": "not a Telegram export",
        "notes.eml": "not an email",
        "pipe.md": "not a regular file",
    }


@pytest.fixture(scope="module")
def formats_home(models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One home holding every format (and the bad files), added once by the real CLI.

    In process (CliRunner): the parsers, the vault and the canary are the subject, not the
    `flurry` process; `add` still parses each file in its own confined process."""
    base = tmp_path_factory.mktemp("formats")
    runtime = Path(
        tempfile.mkdtemp(
            prefix="flurry-test-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        )
    )
    env = {
        **os.environ,
        "FLURRY_HOME": str(base / "home"),
        "FLURRY_PASSPHRASE": PASSPHRASE,
        "FLURRY_MODELS": str(models_dir),
        "FLURRY_RUNTIME_DIR": str(runtime),
    }
    flurry = FlurryInProcess(env, base)
    samples = write_all(base / "data")
    expected_skips = _bad_files(base / "data")
    flurry("init")
    added = flurry("add", "-v", str(base / "data"))
    yield flurry, samples, added, expected_skips, runtime
    shutil.rmtree(runtime, ignore_errors=True)


def _open_node(flurry: Flurry, monkeypatch: pytest.MonkeyPatch):
    from node.home import Home
    from node.node import Node

    monkeypatch.setenv("FLURRY_RUNTIME_DIR", flurry.env["FLURRY_RUNTIME_DIR"])
    monkeypatch.setenv("FLURRY_MODELS", flurry.env["FLURRY_MODELS"])
    return Node.open(Home(flurry.home), PASSPHRASE, say=lambda line: None)


def test_each_format_answers_from_the_record_that_holds_it(formats_home, monkeypatch):
    flurry, samples, _, _, _ = formats_home
    node = _open_node(flurry, monkeypatch)
    try:
        for question, _sample, path_end, meta in QUESTIONS:
            first = node.retrieve(question, 3)[0]
            assert first.path.endswith(path_end), f"{question!r} cited {first.path}"
            assert meta.items() <= first.meta.items(), f"{question!r}: {first.meta}"
        # The recurring event is cited with its next occurrences, in the future.
        choir = node.retrieve("When is the next choir rehearsal?", 1)[0]
        assert choir.meta["summary"] == "Choir rehearsal" and choir.meta["next"]
        assert all(when > time.strftime("%Y-%m-%d") for when in choir.meta["next"])
        assert choir.meta["next"][0][:10] in choir.text or time.strftime("%Y") in choir.text
    finally:
        node.close()


def test_ask_cites_the_sender_and_leaves_no_plaintext_of_any_format(formats_home, capsys):
    """`ask --json` sources carry the email's headers, the CLI shows them as a person writes
    them; and the canary, for every format, after add and ask: no text, name, address,
    subject, date or number of the samples is readable anywhere under the home."""
    flurry, _, _, _, runtime = formats_home
    result = json.loads(flurry("ask", "--json", "What will my mortgage rate be from April?").stdout)
    first = result["sources"][0]
    assert first["path"].endswith("mail/bank.eml")
    assert first["meta"]["from"] == "Banco Atlântico <avisos@bancoatlantico.pt>"
    assert first["meta"]["date"] == "2026-03-03T09:12:00+00:00"
    assert first["meta"]["subject"] == "Your mortgage rate changes in April"

    from node.cli import _print_answer  # how the terminal shows those very sources

    _print_answer(
        iter(
            [
                {"type": "sources", "sources": result["sources"]},
                {"type": "done", "answer": result["answer"]},
            ]
        )
    )
    shown = capsys.readouterr().out
    assert (
        "bank.eml: From Banco Atlântico <avisos@bancoatlantico.pt>, 3 Mar 2026 — Your mortgage rate changes in April"
        in shown
    )

    canaries = [
        "Banco Atl",
        "avisos@bancoatlantico.pt",
        "mortgage rate changes",
        "742 euros",
        "Rui Costa",
        "Clube de Xadrez",
        "clube@example.org",
        "Sintra trail",
        "Name of the Wind",
        "Oceanário",
        "secretaria@escola",
        "Veterinarian appointment",
        "Rua das Flores",
        "Choir rehearsal",
        "20260416",
        "Joana Ferreira",
        "912 345 678",
        "joana.ferreira@example.org",
        "Helena Almeida",
        "Rua Augusta",
        "Ramen place",
        "Sofia",
        "climbing wall",
        "Climbing group",
        "chalk bag",
        "descale",
        "citric acid",
        "Captain Duarte",
        "Boat checklist",
        "sailing course",
        "bi-hourly tariff",
        "55-1200-7781",
        "EDP contract",
        "friends.mbox",
        "family.ics",
        "contacts.vcf",
        "WhatsApp Chat",
        "result.json",
        "electricity.pdf",
        "rate-2026@bancoatlantico.pt",
        "my mortgage rate",
    ]
    raw = [c.encode() for c in canaries] + [c.encode("utf-16-le") for c in canaries]
    files = [p for p in flurry.home.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"keyring.json", "vault.sqlite3", "index.sealed"}
    for path in files:
        data = path.read_bytes()
        for canary in raw:
            assert canary not in data, f"{path.name} holds plaintext: {canary[:60]!r}"
    assert list(runtime.iterdir()) == []


def test_bad_input_is_skipped_with_its_reason_and_the_rest_is_added(formats_home):
    flurry, samples, added, expected_skips, _ = formats_home
    out = added.stdout
    for name, reason in expected_skips.items():
        line = next(
            (
                line
                for line in out.splitlines()
                if line.strip().startswith("skipped")
                and name in line
                and ":" in line.split(name, 1)[1]
            ),
            None,
        )
        assert line is not None, f"{name} not reported as skipped:\n{out}"
        assert reason in line, f"{name}: {line}"
    assert "Traceback" not in added.stderr
    for key, path in samples.items():
        assert f"added: {path}" in out, f"{key} was not added"
    for i in range(1, len(MBOX_MESSAGES) + 1):
        assert f"added: {samples['mbox']}#{i}" in out


def test_incremental_sync_and_a_growing_mbox(flurry, tmp_path, monkeypatch):
    """Unchanged files cost nothing; a new message in an mbox adds that message only; a changed
    file replaces its chunks; a deleted file is forgotten by sync. (In process: one model load.)"""
    from node.home import Home
    from node.node import Node

    Node.init(Home(flurry.home), PASSPHRASE)
    samples = write_all(tmp_path / "data")
    data = str(tmp_path / "data")
    node = _open_node(flurry, monkeypatch)
    try:
        # The first add parses in two worker processes while this one embeds (the bench says
        # whether that pays); what it stores must be the same as parsing in line.
        first = Ingestor(node.vault, node.indexes, node.embedder.embed, parse_workers=2).add(data)
        node.indexes.save()
        assert len(first.added) == len(samples) and not first.skipped
        assert first.chunks == sum(
            len(chunks_of(r))
            for p in samples.values()
            for r in parse(parser_for(p), p.read_bytes(), p.name)
        )
        again = node.add(data)
        assert len(again.unchanged) == len(samples) and again.chunks == 0

        new = email(
            "Carla <carla@example.org>",
            "rui@example.org",
            "Sat, 07 Feb 2026 08:00:00 +0000",
            "Piano lessons",
            "The piano teacher moved the lessons to Thursday afternoons.",
            "piano@example.org",
        )
        samples["mbox"].write_text(mbox(MBOX_MESSAGES + [new]))
        samples["html"].write_text(
            samples["html"].read_text().replace("two months", "three months")
        )
        samples["vcf"].unlink()
        seen: list[tuple[str, str]] = []
        report = node.add(data, lambda p: seen.append((p.outcome, p.path)), sync=True)
        assert ("added", f"{samples['mbox']}#4") in seen
        assert not any(
            path.startswith(f"{samples['mbox']}#") and not path.endswith("#4") for _, path in seen
        ), seen
        assert sorted(report.updated) == sorted([str(samples["mbox"]), str(samples["html"])])
        assert report.removed == [str(samples["vcf"])]
        assert report.chunks == 1 + 2  # the new message, and the article's two sections

        paths = {d.path for d in node.vault.documents()}
        texts = [c.text for c in node.vault.get_chunks(sorted(node.vault.chunk_ids())).values()]
        assert str(samples["vcf"]) not in paths and f"{samples['mbox']}#4" in paths
        assert sum("three months" in t for t in texts) == 1 and not any(
            "two months" in t for t in texts
        )
        assert not any("Joana Ferreira" in t for t in texts)
        assert node.indexes.counts() == (len(texts), len(texts))
        # forget takes an mbox with its messages
        gone = node.forget(str(samples["mbox"]))
        assert len(gone) == 1 + len(MBOX_MESSAGES) + 1
        assert not any(d.path.startswith(str(samples["mbox"])) for d in node.vault.documents())
    finally:
        node.close()


def test_watch_follows_a_folder(flurry, tmp_path):
    flurry("init")
    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / "first.md").write_text("# First\n\nThe first note.\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "add", "--watch", "-v", str(folder)],
        env=flurry.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        _wait_for(lines, f"added: {folder}/first.md")
        _wait_for(lines, "watching")
        (folder / "second.ics").write_text(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20270102T100000Z\r\nSUMMARY:Boiler service\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        _wait_for(lines, f"added: {folder}/second.ics")
        (folder / "first.md").unlink()
        _wait_for(lines, f"removed: {folder}/first.md")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for(lines: queue.Queue, wanted: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if wanted in line:
            return
    raise AssertionError(f"no {wanted!r} within {seconds} s; saw {seen}")


def test_a_schema_1_vault_is_migrated_and_a_newer_one_refused(tmp_path):
    sealer = Sealer(b"k" * 32)
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
        CREATE TABLE documents (id TEXT PRIMARY KEY, path_tag BLOB NOT NULL UNIQUE, content_tag BLOB NOT NULL, meta BLOB NOT NULL);
        CREATE TABLE chunks (id TEXT PRIMARY KEY, document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
                             seq INTEGER NOT NULL, text BLOB NOT NULL, embedding BLOB NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        """
    )
    doc_meta = json.dumps(
        {"path": "a.md", "abs_path": "/a.md", "size": 1, "mtime": 0, "added_at": 0, "tags": []}
    ).encode()
    db.execute(
        "INSERT INTO documents VALUES ('d', x'01', x'02', ?)",
        (sealer.seal(doc_meta, "documents/d/meta"),),
    )
    db.execute(
        "INSERT INTO chunks VALUES ('c', 'd', 0, ?, ?)",
        (
            sealer.seal(b"an old chunk", "chunks/c/d/0/text"),
            sealer.seal(b"\0" * 16, "chunks/c/d/0/embedding"),
        ),
    )
    db.commit()
    db.close()
    vault = Vault(path, sealer)
    try:
        chunk = vault.get_chunks(["c"])["c"]
        assert chunk.text == "an old chunk" and chunk.meta == {}
    finally:
        vault.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    db.execute("UPDATE meta SET value='9' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(VaultError, match="newer than this flurry"):
        Vault(path, sealer)


def test_discover_refuses_big_files_before_reading_them(tmp_path):
    big = tmp_path / "inbox.mbox"
    with open(big, "wb") as f:
        f.truncate(3 * 1024**3)
    files, _ = discover(str(big))
    ((path, _, parser),) = files
    assert parser.name == "mbox" and path.stat().st_size > parser.max_bytes

    class NoVault:  # _read must stop at stat(): it never gets as far as the vault
        def is_unchanged(self, *a):
            raise AssertionError("read a file that is too large")

    item = Ingestor(NoVault(), None, None)._read(path, str(path), parser)
    assert (
        isinstance(item.parsed, Skip)
        and "too large (3.0 GiB" in item.parsed.reason
        and item.content == b""
    )


def test_a_mail_attachment_flurry_reads_joins_its_message_and_forwarded_mail_does_not(tmp_path):
    # The mail parser reads attachments through the registry it is handed (it does not
    # import the registry): a calendar joins the message's record, marked with its name; a
    # forwarded message, a format flurry does not read and a broken PDF add nothing.
    from email.message import EmailMessage

    from format_samples import BANK_LETTER, CALENDAR

    message = EmailMessage()
    message["From"] = "Ana Lima <ana@example.org>"
    message["To"] = "Rui Costa <rui@example.org>"
    message["Subject"] = "The vet on Thursday"
    message["Date"] = "Mon, 13 Apr 2026 08:00:00 +0000"
    message.set_content("Here is the appointment for Luna.")
    message.add_attachment(
        CALENDAR.encode(), maintype="text", subtype="calendar", filename="vet.ics"
    )
    message.add_attachment(
        BANK_LETTER.encode(), maintype="application", subtype="octet-stream", filename="fwd.eml"
    )
    message.add_attachment(
        b"PK\x03\x04 not read", maintype="application", subtype="zip", filename="photos.zip"
    )
    message.add_attachment(
        b"%PDF-1.4 broken", maintype="application", subtype="pdf", filename="scan.pdf"
    )
    path = tmp_path / "vet.eml"
    path.write_bytes(message.as_bytes())

    (record,) = parser_for(path).run(path.read_bytes(), path.name)
    attached = {s.meta.get("attachment") for s in record.sections} - {None}
    assert attached == {"vet.ics"}
    text = "\n".join(s.text for s in record.sections)
    assert "Here is the appointment for Luna." in text
    assert "Veterinarian appointment for Luna the cat" in text
    assert "mortgage" not in text  # the forwarded letter is read where it was sent, not here
