"""The walking skeleton end to end, through the real `flurry` command line: real models,
real chromadb, the real vault, on a corpus the test writes.

``flurry`` runs the command line as a process, as a user would; ``cli`` runs the same
command line in this process (click's CliRunner) for tests whose subject is the commands
and not the process: a new process spends seconds importing the project before it starts."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from conftest import CORPUS, PASSPHRASE, QUESTIONS

from store.chunking import chunk_text


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        + f"@{p.stat().st_mtime_ns}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_init_prints_did_and_refuses_a_second_time(cli):
    # In process (CliRunner): the subject is the command's message and exit status; `flurry init`
    # as a process is run by test_no_plaintext_under_home and test_a_second_process_is_told_the_home_is_busy.
    first = cli("init")
    assert "did:key:z6Mk" in first.stdout
    again = cli("init", check=False)
    assert again.returncode == 1
    assert "already holds a flurry node" in again.stderr
    assert "Traceback" not in again.stderr


def test_wrong_passphrase_is_a_clear_error_and_changes_nothing(cli, corpus):
    # In process (CliRunner): an error path of the command line; the real keyring refuses.
    cli("init")
    cli("add", str(corpus))
    before = _tree_digest(cli.home)
    for command in (["status"], ["add", str(corpus)], ["ask", "kitchen?"], ["forget", str(corpus)]):
        result = cli(*command, check=False, FLURRY_PASSPHRASE="not the passphrase")
        assert result.returncode == 1, command
        assert "wrong passphrase" in result.stderr
        assert "Traceback" not in result.stderr
    assert _tree_digest(cli.home) == before


def test_commands_before_init_say_what_to_do(cli):
    # In process (CliRunner): an error path of the command line.
    result = cli("ask", "anything", check=False)
    assert result.returncode == 1
    assert "flurry init" in result.stderr


def test_passphrase_file_and_missing_passphrase(cli, tmp_path):
    # In process (CliRunner): argument and environment wiring; the real keyring is unlocked.
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE + "\n")
    cli("--passphrase-file", str(secret), "init", FLURRY_PASSPHRASE="")
    env = {k: v for k, v in cli.env.items() if k != "FLURRY_PASSPHRASE"}
    status = cli.__class__(env, cli.cwd)("--passphrase-file", str(secret), "status", "--json")
    assert json.loads(status.stdout)["documents"] == 0
    missing = cli.__class__(env, cli.cwd)("status", check=False, input="")
    assert missing.returncode == 1 and "FLURRY_PASSPHRASE" in missing.stderr


def test_add_ask_update_forget(cli, corpus):
    # In process (CliRunner), with the real models, chromadb and vault: what is tested is what
    # the commands do with them, not the process around them (the same commands run as
    # processes in test_no_plaintext_under_home).
    cli("init")
    added = cli("add", str(corpus))
    assert f"added {len(CORPUS)}" in added.stdout
    status = json.loads(cli("status", "--json").stdout)
    expected_chunks = sum(
        len(chunk_text(text, markdown=not name.endswith(".txt"))) for name, text in CORPUS.items()
    )
    assert (status["documents"], status["chunks"]) == (len(CORPUS), expected_chunks)
    assert status["index"]["vectors"] == status["index"]["lexical"] == expected_chunks

    # Each question's answer lives in one file; that file must be the first source.
    for question, answer_file in QUESTIONS:
        result = json.loads(cli("ask", question, "--json").stdout)
        assert set(result) == {"answer", "grounded", "sources"}
        assert result["answer"].strip() and result["grounded"] is True, result
        top = result["sources"][0]
        assert top["path"] == os.path.join(str(corpus), answer_file), (question, result["sources"])
        assert set(top) == {"path", "chunk", "score", "snippet", "meta", "quote"}
        # The answer rests on a line of that file, quoted as the file says it.
        quoted = [s for s in result["sources"] if s["quote"]]
        assert quoted and all(s["path"] == top["path"] for s in quoted), result
        said = " ".join(CORPUS[answer_file].split())
        assert all(line in said for s in quoted for line in s["quote"].split(" … ")), quoted
        assert isinstance(top["meta"], dict)  # a note's heading; an email's sender, date, subject
        assert isinstance(top["chunk"], int) and isinstance(top["score"], float) and top["snippet"]

    # A question the notes do not answer is said to be so, not invented.
    result = json.loads(cli("ask", "What is my passport number?", "--json").stdout)
    assert (result["answer"], result["grounded"]) == ("I don't find that in your data.", False)
    assert cli("ask", "What is my passport number?").stdout.startswith(
        "I don't find that in your data."
    )

    # Unchanged files cost nothing; a changed file replaces its chunks.
    again = cli("add", str(corpus))
    assert f"unchanged {len(CORPUS)}" in again.stdout and "added 0" in again.stdout
    (corpus / "garden.md").write_text(
        "# Garden\n\nThe plum tree by the shed was planted by grandfather Tobias.\n"
    )
    changed = cli("add", str(corpus))
    assert "updated 1" in changed.stdout
    result = json.loads(cli("ask", "Who planted the plum tree?", "--json").stdout)
    assert result["sources"][0]["path"].endswith("garden.md")
    assert all("tomatoes" not in s["snippet"] for s in result["sources"])

    # Forget removes the document from the vault and from both indexes.
    forgot = cli("forget", str(corpus / "car.md"))
    assert "car.md" in forgot.stdout
    status = json.loads(cli("status", "--json").stdout)
    assert status["documents"] == len(CORPUS) - 1
    assert status["index"]["vectors"] == status["index"]["lexical"] == status["chunks"]
    result = json.loads(cli("ask", "How much is the car insurance premium?", "--json").stdout)
    assert all(not s["path"].endswith("car.md") for s in result["sources"])
    missing = cli("forget", str(corpus / "car.md"), check=False)
    assert missing.returncode == 1 and "nothing in the vault" in missing.stderr


def test_paths_are_shown_as_given(cli, corpus):
    # In process (CliRunner), in the working folder a process would have: argument wiring.
    cli("init")
    cli.cwd = corpus.parent
    cli("add", "notes")
    result = json.loads(cli("ask", "When is the dentist appointment?", "--json").stdout)
    assert result["sources"][0]["path"] == os.path.join("notes", "health", "dentist.md")


def test_bad_inputs_are_skipped_with_a_reason(cli, tmp_path):
    # In process (CliRunner): the skip reasons and error path of `add`.
    cli("init")
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text("# Bees\n\nThe beehive sits behind the apple trees.\n")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02PNG" * 100)
    (folder / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    (folder / "empty.md").write_text("   \n\n")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    result = cli("add", str(folder))
    assert "added 1" in result.stdout
    assert "binary.txt: binary file" in result.stdout
    assert "latin1.txt: not UTF-8 text" in result.stdout
    assert "empty.md: no text in it" in result.stdout
    assert "photo.jpg: unsupported file type .jpg" in result.stdout
    nowhere = cli("add", str(tmp_path / "does-not-exist"), check=False)
    assert nowhere.returncode == 1 and "no such file or folder" in nowhere.stderr


def test_chat_remembers_and_seals_the_conversation(cli, corpus):
    # In process (CliRunner), with the real models: the conversation and its sealing are the
    # subject; the same commands run as processes in test_no_plaintext_under_home.
    cli("init")
    cli("add", str(corpus))
    result = cli(
        "chat",
        input="When should I plant the tomatoes?\nAnd when does the hedge need trimming?\n/quit\n",
    )
    # Two streamed answers, each followed by its numbered sources.
    assert result.stdout.count("[1] ") >= 2
    assert "garden.md" in result.stdout

    from identity.keyring import Keyring
    from store.sealing import Sealer
    from store.vault import Vault

    keys = Keyring.unlock(cli.home / "keyring.json", PASSPHRASE)
    vault = Vault(cli.home / "vault.sqlite3", Sealer(keys.data_key))
    try:
        [conversation] = vault.conversations()
        messages = vault.messages(conversation["id"])
    finally:
        vault.close()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == "When should I plant the tomatoes?"
    assert messages[1]["content"] and messages[1]["sources"][0]["path"].endswith("garden.md")


def test_a_second_process_is_told_the_home_is_busy(flurry, corpus):
    flurry("init")
    from node.home import Home, HomeLock

    lock = HomeLock(Home(flurry.home))
    lock.acquire()
    try:
        result = flurry("status", check=False)
    finally:
        lock.release()
    assert result.returncode == 1 and "another flurry process" in result.stderr


def test_no_plaintext_under_home(flurry, corpus, runtime_dir):
    """The canary: after add, ask and chat, nothing the owner wrote is readable on disk."""
    flurry("init")
    flurry("add", str(corpus))
    flurry("ask", "What did I decide about the kitchen renovation cabinets?")
    flurry("chat", input="When is the dentist appointment?\n/quit\n")

    canaries: list[bytes] = [PASSPHRASE.encode()]
    for name, text in CORPUS.items():
        words = text.split()
        canaries += [" ".join(words[i : i + 8]).encode() for i in range(len(words) - 7)]
        canaries += [name.encode(), os.path.basename(name).encode(), str(corpus / name).encode()]
    canaries += [b"When is the dentist appointment"]

    from identity.keyring import Keyring
    from store.sealing import Sealer
    from store.vault import Vault

    keys = Keyring.unlock(flurry.home / "keyring.json", PASSPHRASE)
    vault = Vault(flurry.home / "vault.sqlite3", Sealer(keys.data_key))
    try:
        stored = list(vault.load_for_index(sorted(vault.chunk_ids())))
        documents = vault.documents()
    finally:
        vault.close()
    assert len(stored) > len(CORPUS)
    for _, _, embedding in stored:
        raw = embedding.astype("float32").tobytes()
        canaries += [raw, raw[:16], raw[-16:]]  # the whole vector, and four floats from each end
    for doc in documents:
        canaries += [str(int(doc.mtime)).encode(), repr(doc.mtime).encode()]

    files = [p for p in flurry.home.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"keyring.json", "vault.sqlite3", "index.sealed"}
    for path in files:
        data = path.read_bytes()
        for canary in canaries:
            assert canary not in data, f"{path.name} holds plaintext: {canary[:60]!r}"
    # The memory-backed copy of the indexes is gone once the process has ended.
    assert list(runtime_dir.iterdir()) == []


def test_in_process_runs_say_what_the_process_says(flurry, cli):
    """The ``cli`` fixture stands in for the `flurry` process only as long as both say the same:
    an error path and a command's output, compared byte for byte."""
    before_init = [run("ask", "anything", check=False) for run in (flurry, cli)]
    assert before_init[0].returncode == before_init[1].returncode == 1
    assert (
        before_init[0].stdout == before_init[1].stdout
        and before_init[0].stderr == before_init[1].stderr
    )
    cli("init")
    for command in (
        ["peers", "add", "not a url", "--name", "x"],
        ["grants", "list"],
        ["skills", "list"],
    ):
        said = [run(*command, check=False) for run in (flurry, cli)]
        assert said[0].returncode == said[1].returncode, command
        assert said[0].stdout == said[1].stdout and said[0].stderr == said[1].stderr, command
