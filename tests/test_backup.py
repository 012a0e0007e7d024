"""`flurry backup` and `flurry restore`: everything comes back, nothing in the repository is
readable without the passphrase, damage and a stranger's folder are clear errors, a second
backup writes only what changed, and kill -9 in the middle leaves old-or-new, never half."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, PASSPHRASE, new_node

from agent.grants import Grant
from identity.did_key import did_key_from_ed25519_public
from identity.keyring import Keyring
from node.backup_repository import Repository, backup_keys, cut, cut_stream
from node.home import Home
from node.node import Node
from node.peers import add_peer, list_peers
from store.retrieval import open_snapshot_plaintext, write_snapshot_plaintext
from store.sealing import Sealer
from store.vault import Vault

CANARY = "Wendelin Quastberg keeps forty beehives on the roof of the old tram depot in Graz."
PEER_DID = did_key_from_ed25519_public(bytes(range(32)))


def _fill(node: Node, tmp_path: Path) -> dict[str, object]:
    """A canary document, a conversation, a grant, a token, a peer, a skill and a skill's code
    folder in the node; returns what to look for after a restore."""
    (tmp_path / "canary.md").write_text(f"# Bees\n\n{CANARY}\n")
    node.add(str(tmp_path / "canary.md"))
    conversation = node.vault.create_conversation("about the bees")
    node.vault.append_message(conversation, {"role": "user", "content": "Who keeps the bees?"})
    node.grants.add(Grant(PEER_DID, frozenset({"ask"}), tags=frozenset({"travel"})))
    token = node.tokens.create("laptop", {"ask"})
    add_peer(node.vault, "http://127.0.0.1:9", PEER_DID, "bob")
    node.skills.install_builtin("notes")
    code = node.home.skills / "handmade" / "handmade.py"
    code.parent.mkdir(parents=True)
    code.write_text("def tool():\n    return 'made by hand'\n")
    return {"conversation": conversation, "token": token, "code": code.read_bytes()}


def _sealer(home: Path) -> Sealer:
    return Sealer(Keyring.unlock(home / "keyring.json", PASSPHRASE).data_key)


def read_snapshot_plaintext(path: Path, sealer: Sealer) -> bytes:
    with open_snapshot_plaintext(path, sealer) as stream:
        return stream.read() or b""


def _status(cli) -> dict:
    return json.loads(cli("status", "--json").stdout)


def test_backup_wipe_restore_brings_everything_back(cli, tmp_path, models_dir):
    node = new_node(tmp_path, models_dir, notes=True)
    try:
        expected = _fill(node, tmp_path)
    finally:
        node.close()
    before = _status(cli)
    # The real model answers from the restored data as it did from the original.
    question = "Who keeps forty beehives on the tram depot roof?"
    answer_before = json.loads(cli("ask", question, "--json").stdout)
    assert "Quastberg" in answer_before["answer"], answer_before
    repo = tmp_path / "repo"
    index_before = read_snapshot_plaintext(cli.home / "index.sealed", _sealer(cli.home))
    backup = cli("backup", str(repo))
    assert "does not open" not in backup.stdout + backup.stderr
    last = json.loads((cli.home / "last_backup.json").read_text())
    assert last["dest"] == str(repo) and last["bytes_written"] > 0 and last["snapshot"]

    shutil.rmtree(cli.home)
    cli.home.mkdir()  # an empty folder is as good as none
    restored = cli("restore", str(repo))
    assert before["owner_did"] in restored.stdout
    # the index snapshot came back as it was, not rebuilt from the vault at the next unlock
    assert read_snapshot_plaintext(cli.home / "index.sealed", _sealer(cli.home)) == index_before
    after = _status(cli)
    for key in ("owner_did", "node_did", "documents", "chunks"):
        assert after[key] == before[key], key
    assert after["index"]["vectors"] == before["index"]["vectors"]
    answer_after = json.loads(cli("ask", question, "--json").stdout)
    assert answer_after["answer"] == answer_before["answer"]
    assert [(s["path"], s["quote"]) for s in answer_after["sources"]] == [
        (s["path"], s["quote"]) for s in answer_before["sources"]
    ]

    node = Node.open(Home(cli.home), PASSPHRASE, say=lambda line: None)
    try:
        assert (
            node.retrieve("Who keeps beehives on the tram depot roof?", 3)[0].text.find("Quastberg")
            >= 0
        )
        assert node.vault.messages(str(expected["conversation"]))[0]["content"] == (
            "Who keeps the bees?"
        )
        grant = node.grants.get(PEER_DID)
        assert grant is not None and grant.tags == frozenset({"travel"})
        assert node.tokens.verify(str(expected["token"])).name == "laptop"
        assert [p.name for p in list_peers(node.vault)] == ["bob"]
        assert [s.name for s in node.skills.list()] == ["notes"]
    finally:
        node.close()
    assert (cli.home / "skills" / "handmade" / "handmade.py").read_bytes() == expected["code"]
    # What was left out stays out: nothing of the old process's comes back.
    assert not (cli.home / "last_backup.json").exists()


def test_repository_holds_no_plaintext(cli, tmp_path, models_dir):
    """The canary test of the home, run on the repository: no text, name, path, embedding, id
    or setting of the owner's is readable in any file of it."""
    node = new_node(tmp_path, models_dir, notes=True)
    try:
        _fill(node, tmp_path)
        chunk_ids = sorted(node.vault.chunk_ids())
        stored = list(node.vault.load_for_index(chunk_ids))
    finally:
        node.close()
    repo = tmp_path / "repo"
    cli("backup", str(repo))

    canaries: list[bytes] = [PASSPHRASE.encode(), CANARY[:40].encode(), b"Quastberg"]
    for name, text in CORPUS.items():
        words = text.split()
        canaries += [" ".join(words[i : i + 8]).encode() for i in range(len(words) - 7)]
        canaries += [name.encode(), str(tmp_path / "notes" / name).encode()]
    for _, _, embedding in stored:
        raw = embedding.astype("float32").tobytes()
        canaries += [raw[:16], raw[-16:]]
    # Plaintext in the home (ids, config, the skill's code) is sealed in the repository, and
    # so is every file's own header: no SQLite, tar or chromadb structure shows.
    canaries += [cid.encode() for cid in chunk_ids]
    canaries += [b"smollm2", b"made by hand", b"SQLite format 3", b"chroma", b"handmade"]
    files = [p for p in repo.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        for canary in canaries:
            assert canary not in data, f"{path.relative_to(repo)} holds plaintext: {canary[:60]!r}"


def test_second_backup_writes_only_new_chunks(cli, tmp_path, models_dir):
    """Only chunks the repository lacks are written. (How few that is at 100k chunks, where
    chunks are small next to the files, is bench/bench_backup.py's figure; in a home this small
    an added document touches every chunk of the vault and the index.)"""
    node = new_node(tmp_path, models_dir, notes=True)
    node.close()
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    objects = Repository.open(repo, _repo_keys(repo)).object_ids()
    packs = {p.name: p.stat().st_size for p in (repo / "packs").rglob("*") if p.is_file()}
    unchanged = cli("backup", str(repo))
    assert " 0 bytes new" in unchanged.stdout, unchanged.stdout  # nothing changed, nothing written

    (tmp_path / "more.md").write_text("# More\n\nThe bicycle needs a new chain before spring.\n")
    cli("add", str(tmp_path / "more.md"))
    cli("backup", str(repo))
    last = json.loads((cli.home / "last_backup.json").read_text())
    repository = Repository.open(repo, _repo_keys(repo))
    after = repository.object_ids()
    assert objects < after  # every object of the first backup is kept
    assert last["bytes_written"] == sum(
        length
        for o in after - objects
        if (found := repository.object_location(o))
        for length in [found[2]]
    )
    # Packs are written once and never touched again.
    assert {
        p.name: p.stat().st_size for p in (repo / "packs").rglob("*") if p.name in packs
    } == packs
    first, _, third = (repository.read_manifest(s) for s in repository.snapshot_ids())
    for name in ("keyring.json", "config.json"):  # unchanged files: the same objects, reused
        assert [f.chunks for f in first.files if f.path == name] == [
            f.chunks for f in third.files if f.path == name
        ]
    cli("backup", "verify", str(repo))
    assert len(cli("backup", "list", str(repo)).stdout.splitlines()) == 3


def test_damaged_object_is_reported_with_its_file(cli, tmp_path):
    cli("init")
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    keys = _repo_keys(repo)
    repository = Repository.open(repo, keys)
    manifest = repository.read_manifest(repository.snapshot_ids()[-1])
    vault_object = next(f for f in manifest.files if f.path == "vault.sqlite3").chunks[0]
    found = repository.object_location(vault_object)
    assert found is not None
    pack, offset, length = found
    data = bytearray(pack.read_bytes())
    data[offset + length // 2] ^= 0x01
    pack.write_bytes(bytes(data))

    result = cli("backup", "verify", str(repo), check=False)
    assert result.returncode == 1
    assert f"vault.sqlite3: object {vault_object} is damaged" in result.stdout
    # A restore from it stops with the same news and leaves no home behind.
    shutil.rmtree(cli.home)
    result = cli("restore", str(repo), check=False)
    assert result.returncode == 1 and f"object {vault_object} is damaged" in result.stderr
    assert not cli.home.exists()
    assert [p.name for p in cli.home.parent.iterdir() if "restoring" in p.name] == []


def test_wrong_passphrase_and_another_nodes_repository(cli, tmp_path):
    cli("init")
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    shutil.rmtree(cli.home)
    result = cli("restore", str(repo), check=False, FLURRY_PASSPHRASE="not the passphrase")
    assert result.returncode == 1 and "wrong passphrase" in result.stderr
    assert "Traceback" not in result.stderr and not cli.home.exists()
    result = cli("backup", "verify", str(repo), check=False, FLURRY_PASSPHRASE="nope")
    assert result.returncode == 1 and "wrong passphrase" in result.stderr

    # Another node (its own data key) backing up into this folder is refused, nothing written.
    cli("init")
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    result = cli("backup", str(repo), check=False)
    assert result.returncode == 1 and "another node's backups" in result.stderr
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before
    # A folder that is no repository and not empty is left alone.
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    result = cli("backup", str(tmp_path / "photos"), check=False)
    assert result.returncode == 1 and "not empty" in result.stderr
    result = cli("restore", str(tmp_path / "photos"), check=False)
    assert result.returncode == 1 and "holds no flurry backups" in result.stderr


def test_repository_of_the_older_format_is_refused(cli, tmp_path):
    """Version 1 named objects by HMAC-SHA256, this flurry by keyed BLAKE3: it neither reads
    such a folder nor adds to it, and says what to do."""
    cli("init")
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    meta = repo / "flurry-backup.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "version": 1}))
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    result = cli("backup", str(repo), check=False)
    assert result.returncode == 1 and "version 1" in result.stderr, result.stderr
    assert "back up into a new folder" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before
    shutil.rmtree(cli.home)
    result = cli("restore", str(repo), check=False)
    assert result.returncode == 1 and "version 1" in result.stderr and not cli.home.exists()


@pytest.mark.parametrize("direct", [True, False], ids=["O_DIRECT", "page-cache"])
def test_objects_read_back_across_buffers_and_packs(tmp_path, monkeypatch, direct):
    """Objects of every size a backup writes come back whole: sealed into write buffers, split
    at block boundaries for direct writes, across several packs, with and without O_DIRECT."""
    import node.backup_repository as repository_module

    monkeypatch.setattr(repository_module, "PACK_BYTES", 3 * 1024 * 1024)
    if not direct:
        monkeypatch.setattr(repository_module, "_O_DIRECT", 0)
    sealer = Sealer(os.urandom(32))
    repo = Repository.create(tmp_path / "repo", sealer)
    rng = random.Random(14)
    chunks = [
        rng.randbytes(rng.choice([1, 4095, 4096, 8192, 30_000, 256 * 1024])) for _ in range(200)
    ]
    ids = [repo.store(memoryview(c))[0] for c in chunks]
    repo.finish_objects("20261202T000000Z-00000000")
    packs = [p for p in (tmp_path / "repo" / "packs").rglob("*") if p.is_file()]
    assert len(packs) >= 3 and not any((tmp_path / "repo" / "tmp").iterdir())
    reopened = Repository.open(tmp_path / "repo", sealer)
    assert [reopened.get_object(i) for i in ids] == chunks
    reopened.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("path", "../../x", "outside the home"),
        ("path", "/etc/x", "outside the home"),
        ("lists", ["../../x"], "invalid id"),
    ],
)
def test_manifest_naming_a_path_outside_is_refused(cli, tmp_path, field, value, message):
    """A manifest (even one sealed with the right key) names files and objects only inside:
    objects are looked up by a validated hex id, files by a checked relative path."""
    cli("init")
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    repository = Repository.open(repo, _repo_keys(repo))
    manifest = repository.read_manifest(repository.snapshot_ids()[-1])
    setattr(manifest.files[-1], field, value)
    manifest.id = manifest.id[:-8] + "ffffffff"
    repository.write_manifest(manifest)

    shutil.rmtree(cli.home)
    result = cli("restore", str(repo), "--snapshot", manifest.id, check=False)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert not cli.home.exists() and not (tmp_path / "x").exists()
    result = cli("backup", "verify", str(repo), check=False)
    assert result.returncode == 1 and message in result.stdout
    # The good snapshot still restores.
    cli("restore", str(repo), "--snapshot", repository.snapshot_ids()[0])


def test_oversized_or_cut_files_are_refused_before_reading(cli, tmp_path):
    cli("init")
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    repository = Repository.open(repo, _repo_keys(repo))
    snapshot = repo / "snapshots" / repository.snapshot_ids()[0]
    pack = next(p for p in (repo / "packs").rglob("*") if p.is_file())
    with open(pack, "r+b") as f:
        f.truncate(pack.stat().st_size // 2)  # a pack cut short
    result = cli("backup", "verify", str(repo), check=False)
    assert result.returncode == 1 and "is cut short" in result.stdout
    with open(snapshot, "ab") as f:
        f.truncate(1024 * 1024 * 1024)  # sparse: a 1 GiB manifest claimed, nothing read
    result = cli("backup", "verify", str(repo), check=False)
    assert result.returncode == 1 and "more than a flurry backup writes" in result.stdout


@pytest.mark.parametrize("window", [2, 3, 5, 64], ids=lambda w: f"{w}x32KiB")
def test_the_streamed_cut_gives_the_chunks_of_the_whole(window):
    """``cut_stream`` (the index snapshot, too big to hold) cuts exactly where ``cut`` of the
    whole does, so a backup of a streamed snapshot shares its chunks with one made whole;
    whatever the window, and with a stream that gives a few bytes at a time."""

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data, self._at = data, 0

        def readable(self) -> bool:
            return True

        def readinto(self, target) -> int:
            n = min(len(target), 1000)
            piece = self._data[self._at : self._at + n]
            target[: len(piece)] = piece
            self._at += len(piece)
            return len(piece)

    rng = random.Random(window)
    # Random bytes, then a long run of one byte (FastCDC cuts at its max there).
    data = rng.randbytes(700_000) + b"\0" * 200_000 + rng.randbytes(100_000)
    whole = [bytes(c) for c in cut(data, small=True)]
    assert len(whole) > 50 and b"".join(whole) == data
    for stream in (io.BytesIO(data), Trickle(data)):
        assert list(cut_stream(stream, small=True, window=window * 32 * 1024)) == whole
    for size in (0, 1, 2047, 40_000):  # nothing, less than one chunk, a few
        small = rng.randbytes(size)
        assert list(cut_stream(io.BytesIO(small), small=True)) == [
            bytes(c) for c in cut(small, small=True)
        ]


def _streamed_index(cli, plaintext: bytes) -> None:
    """An index snapshot of ``plaintext``: a backup copies it without reading it as an index."""
    write_snapshot_plaintext(cli.home / "index.sealed", _sealer(cli.home), [plaintext])


def test_a_big_index_snapshot_is_backed_up_and_restored_a_window_at_a_time(cli, tmp_path):
    """40 MiB: several of the chunker's windows and of the sealed stream's frames."""
    cli("init")
    plaintext = random.Random(21).randbytes(40 * 1024 * 1024)
    _streamed_index(cli, plaintext)
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    repository = Repository.open(repo, _repo_keys(repo))
    manifest = repository.read_manifest(repository.snapshot_ids()[-1])
    (entry,) = [f for f in manifest.files if f.path == "index.sealed"]
    assert entry.size == len(plaintext) and len(entry.chunks) > 1000
    repository.close()
    shutil.rmtree(cli.home)
    cli("restore", str(repo))
    assert read_snapshot_plaintext(cli.home / "index.sealed", _sealer(cli.home)) == plaintext


def test_an_index_snapshot_that_breaks_midway_is_left_out_and_the_rest_kept(cli, tmp_path):
    cli("init")
    _streamed_index(cli, random.Random(22).randbytes(20 * 1024 * 1024))
    with open(cli.home / "index.sealed", "r+b") as f:  # a byte of a later frame flipped
        f.seek(12 * 1024 * 1024)
        byte = f.read(1)
        f.seek(12 * 1024 * 1024)
        f.write(bytes([byte[0] ^ 1]))
    repo = tmp_path / "repo"
    backup = cli("backup", str(repo))
    assert "the index snapshot does not open" in backup.stdout + backup.stderr
    repository = Repository.open(repo, _repo_keys(repo))
    manifest = repository.read_manifest(repository.snapshot_ids()[-1])
    assert {f.path for f in manifest.files} >= {"vault.sqlite3", "keyring.json"}
    assert "index.sealed" not in {f.path for f in manifest.files}
    repository.close()
    assert cli("backup", "verify", str(repo)).returncode == 0


def test_an_index_that_does_not_add_up_is_refused_at_restore(cli, tmp_path):
    """A manifest (sealed with the right key) saying one byte more than its index's objects
    hold: the restore stops, and no half home is left."""
    cli("init")
    _streamed_index(cli, random.Random(23).randbytes(3 * 1024 * 1024))
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    repository = Repository.open(repo, _repo_keys(repo))
    manifest = repository.read_manifest(repository.snapshot_ids()[-1])
    (entry,) = [f for f in manifest.files if f.path == "index.sealed"]
    entry.size += 1
    manifest.id = manifest.id[:-8] + "ffffffff"
    repository.write_manifest(manifest)
    repository.close()
    shutil.rmtree(cli.home)
    result = cli("restore", str(repo), "--snapshot", manifest.id, check=False)
    assert result.returncode == 1 and "does not add up" in result.stderr, result.stderr
    assert not cli.home.exists()


def test_backup_while_serve_runs(flurry, tmp_path):
    """The running node holds the home's lock; a backup reads past it, consistently."""
    flurry("init")
    (tmp_path / "note.md").write_text(f"# Bees\n\n{CANARY}\n")
    flurry("add", str(tmp_path / "note.md"))
    repo = tmp_path / "repo"
    with flurry.serving():
        result = flurry("backup", str(repo))
        assert "snapshot" in result.stdout
    before = json.loads(flurry("status", "--json").stdout)
    shutil.rmtree(flurry.home)
    flurry("restore", str(repo))
    after = json.loads(flurry("status", "--json").stdout)
    assert (after["owner_did"], after["documents"], after["chunks"]) == (
        before["owner_did"],
        before["documents"],
        before["chunks"],
    )


def test_with_models_copies_the_model_file(cli, tmp_path):
    cli("init")
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + os.urandom(300_000))
    config = json.loads((cli.home / "config.json").read_text())
    (cli.home / "config.json").write_text(json.dumps({**config, "chat_model": str(model)}))
    repo = tmp_path / "repo"
    cli("backup", str(repo), "--with-models")
    shutil.rmtree(cli.home)
    cli("restore", str(repo))
    assert (cli.home / "models" / "tiny.gguf").read_bytes() == model.read_bytes()


# --- kill -9 at chosen moments (bench/bench_backup.py does 20 at random ones) -------------

_KILLER = """
import os, signal, sys
from pathlib import Path
from identity.keyring import Keyring
from node.backup import back_up, restore
from node.home import Home

mode, home, repo, at = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
count = 0

def step():
    global count
    count += 1
    if count == at:
        os.kill(os.getpid(), signal.SIGKILL)

passphrase = os.environ["FLURRY_PASSPHRASE"]
if mode == "backup":
    keys = Keyring.unlock(home / "keyring.json", passphrase)
    back_up(Home(home), keys, repo, after_object=step, say=lambda line: None)
else:
    restore(repo, Home(home), passphrase, after_file=step, say=lambda line: None)
"""


def _killed(env: dict[str, str], mode: str, home: Path, repo: Path, at: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _KILLER, mode, str(home), str(repo), str(at)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def test_kill_during_backup_and_restore(cli, env, tmp_path, models_dir):
    node = new_node(tmp_path, models_dir, notes=True)
    node.close()
    repo = tmp_path / "repo"
    cli("backup", str(repo))
    first = Repository.open(repo, _repo_keys(repo)).snapshot_ids()

    (tmp_path / "more.md").write_text(f"# Bees\n\n{CANARY}\n")
    cli("add", str(tmp_path / "more.md"))
    _killed(env, "backup", cli.home, repo, at=2)  # mid-way through the new objects
    repository = Repository.open(repo, _repo_keys(repo))
    assert repository.snapshot_ids() == first  # the killed backup made no snapshot
    report = repository.verify()
    assert report.ok and (report.orphans or report.leftovers)  # reported, harmless
    cli("backup", str(repo))
    cli("backup", "verify", str(repo))
    cli("backup", "prune", str(repo))
    assert Repository.open(repo, _repo_keys(repo)).verify().orphans == []

    # Restore killed after its first and its third file: no home at all, never half of one.
    target = tmp_path / "new-home"
    for at in (1, 3):
        _killed(env, "restore", target, repo, at=at)
        assert not target.exists()
    cli("restore", str(repo), FLURRY_HOME=str(target))  # sweeps what the killed ones left
    assert [p.name for p in tmp_path.iterdir() if "restoring" in p.name] == []
    keys = Keyring.unlock(target / "keyring.json", PASSPHRASE)
    vault = Vault(target / "vault.sqlite3", Sealer(keys.data_key))
    try:
        assert len(vault.documents()) == len(CORPUS) + 1
    finally:
        vault.close()


def _repo_keys(repo: Path) -> Sealer:
    return backup_keys(Keyring.unlock(repo / "keyring.json", PASSPHRASE).data_key)
