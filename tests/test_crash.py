"""kill -9 in the middle of `flurry add`, again and again: the vault opens, every document
reported as added is whole, none is half there, and the indexes catch up."""

from __future__ import annotations

import json
import random

from conftest import PASSPHRASE

from identity.keyring import Keyring
from store.chunking import chunk_text
from store.sealing import Sealer
from store.vault import Vault

TOPICS = [
    "bicycle",
    "violin",
    "sourdough",
    "glacier",
    "lighthouse",
    "orchard",
    "telescope",
    "harbour",
]


def _write_corpus(root, count: int) -> dict[str, str]:
    root.mkdir()
    texts = {}
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        paragraphs = [
            f"Note {i} about the {topic}. "
            + " ".join(f"{topic} detail {i}-{p}-{w}" for w in range(40))
            for p in range(6)
        ]
        text = f"# {topic.title()} {i}\n\n" + "\n\n".join(paragraphs) + "\n"
        (root / f"note-{i:03}.md").write_text(text)
        texts[str(root / f"note-{i:03}.md")] = text
    return texts


def test_kill_during_add_loses_nothing_reported(flurry, tmp_path):
    flurry("init")
    texts = _write_corpus(tmp_path / "many", 40)
    reported: set[str] = set()
    rng = random.Random(7)
    for round_ in range(3):
        proc = flurry.popen("add", "-v", str(tmp_path / "many"))
        # Wait for a few more files to be reported, then kill without warning.
        wanted = rng.randint(2, 5)
        seen = 0
        for line in proc.stdout:
            outcome, _, path = line.strip().partition(": ")
            if outcome in ("added", "updated"):
                reported.add(path)
                seen += 1
                if seen >= wanted:
                    break
        proc.kill()
        proc.wait()
        assert proc.returncode == -9, f"round {round_}: add finished before it could be killed"

    keys = Keyring.unlock(flurry.home / "keyring.json", PASSPHRASE)
    vault = Vault(flurry.home / "vault.sqlite3", Sealer(keys.data_key))
    try:
        documents = {d.path: d for d in vault.documents()}
        assert reported <= set(documents), "a document reported as added is missing"
        chunks = sorted(vault.get_chunks(sorted(vault.chunk_ids())).values(), key=lambda c: c.seq)
        for path, doc in documents.items():
            # Whole: exactly the chunks the file makes, in order, nothing more, nothing less.
            assert [c.text for c in chunks if c.document_id == doc.id] == chunk_text(texts[path]), (
                path
            )
    finally:
        vault.close()

    # The next unlock catches the indexes up with the vault, without re-embedding.
    status = json.loads(flurry("status", "--json").stdout)
    assert status["index"]["vectors"] == status["index"]["lexical"] == status["chunks"]
    # And a full run completes the rest.
    flurry("add", str(tmp_path / "many"))
    status = json.loads(flurry("status", "--json").stdout)
    assert status["documents"] == len(texts)
    assert (
        status["index"]["vectors"]
        == status["chunks"]
        == sum(len(chunk_text(t)) for t in texts.values())
    )


def test_kill_during_a_big_mbox_resumes_at_the_next_message(cli, tmp_path):
    """An mbox is one document per message: after kill -9 the messages reported are whole,
    and the next run stores only the rest (none twice, none re-embedded)."""
    from format_samples import email, mbox

    from store.ingest import chunks_of
    from store.parsers.registry import MBOX

    # The killed `add` is a process, as it must be; the commands around it run in process
    # (CliRunner), which is the same code opening the same home (test_kill_during_add_loses_nothing_reported
    # runs them all as processes).
    cli("init")
    messages = [
        email(
            f"Sender {i} <s{i}@example.org>",
            "me@example.org",
            "Mon, 02 Feb 2026 18:00:00 +0000",
            f"{TOPICS[i % 8]} {i}",
            "\n\n".join(
                " ".join(f"{TOPICS[i % 8]} word {i}-{p}-{w}" for w in range(40)) for p in range(3)
            ),
            f"m{i}@example.org",
        )
        for i in range(24)
    ]
    path = tmp_path / "archive.mbox"
    path.write_text(mbox(messages))
    expected = {
        f"{path}{r.label}": [t for t, _ in chunks_of(r)] for r in MBOX.run(path.read_bytes())
    }

    proc = cli.popen("add", "-v", str(path))
    reported = []
    for line in proc.stdout:
        outcome, _, shown = line.strip().partition(": ")
        if outcome == "added":
            reported.append(shown)
            if len(reported) >= 3:
                break
    proc.kill()
    proc.wait()
    assert proc.returncode == -9, "add finished before it could be killed"

    keys = Keyring.unlock(cli.home / "keyring.json", PASSPHRASE)
    vault = Vault(cli.home / "vault.sqlite3", Sealer(keys.data_key))
    try:
        documents = {d.path: d for d in vault.documents()}
        chunks = sorted(vault.get_chunks(sorted(vault.chunk_ids())).values(), key=lambda c: c.seq)
        assert set(reported) <= set(documents)
        assert str(path) not in documents, "the file counts as done before all its messages are in"
        for shown, doc in documents.items():
            assert [c.text for c in chunks if c.document_id == doc.id] == expected[shown], shown
    finally:
        vault.close()

    rerun = cli("add", "-v", str(path)).stdout.splitlines()
    added_now = [
        line.partition(": ")[2] for line in rerun if line.startswith("added: ") and "#" in line
    ]
    assert not set(added_now) & set(documents), "a message stored before the kill was stored again"
    assert set(added_now) | set(documents) == set(expected)
    status = json.loads(cli("status", "--json").stdout)
    assert status["documents"] == len(expected) + 1  # the messages and the file's marker
    assert status["index"]["vectors"] == status["chunks"] == sum(len(c) for c in expected.values())
