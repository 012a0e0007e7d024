"""Passphrase change and the recovery code: the keyring re-wrapped, never the data; a wrong
secret changes nothing; a kill -9 in the middle leaves the old or the new passphrase working.

bench/bench_keyring_crash.py kills at 20 random moments each; here a few chosen ones."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE  # the env fixture's: what `flurry init` was given

from identity.keyring import (
    EmptyPassphrase,
    Keyring,
    KeyringCorrupt,
    NoRecoveryCode,
    PassphraseUnchanged,
    WrongPassphrase,
    WrongRecoveryCode,
    _checksum,
)
from identity.recovery_code import RecoveryCode, RecoveryCodeInvalid

OLD = "old passphrase, long enough"
NEW = "a new passphrase, also long"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One keyring with a recovery code for the module (each Argon2id costs a fraction of a second)."""
    path = tmp_path_factory.mktemp("keyring") / "keyring.json"
    code = RecoveryCode.generate()
    keys = Keyring.create(path, OLD, code)
    return path, keys, code


@pytest.fixture
def keyring(made, tmp_path):
    """A private copy of the module's keyring, free to change; (path, keys, code)."""
    path = tmp_path / "keyring.json"
    shutil.copy2(made[0], path)
    return path, made[1], made[2]


def _same_keys(a, b) -> bool:
    return (
        a.data_key == b.data_key
        and (a.owner_did, a.node_did) == (b.owner_did, b.node_did)
        and a.owner_key.private_bytes_raw() == b.owner_key.private_bytes_raw()
        and a.node_key.private_bytes_raw() == b.node_key.private_bytes_raw()
    )


def _unchanged(path: Path, action) -> None:
    """Run ``action`` expecting it to raise, and check the file was not touched."""
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    action()
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert not list(path.parent.glob(".keyring.json.*.tmp"))


# --- the keyring ------------------------------------------------------------------------


def test_passphrase_change_rewraps_the_same_keys_under_a_fresh_salt(keyring):
    path, keys, code = keyring
    before = json.loads(path.read_text())

    changed = Keyring.change_passphrase(path, OLD, NEW)

    after = json.loads(path.read_text())
    assert _same_keys(changed, keys) and _same_keys(Keyring.unlock(path, NEW), keys)
    with pytest.raises(WrongPassphrase):
        Keyring.unlock(path, OLD)
    assert after["kdf"]["salt"] != before["kdf"]["salt"]
    assert after["sealed"]["data_key"] != before["sealed"]["data_key"]
    assert after["recovery"] == before["recovery"]  # untouched: the code goes on working
    assert _same_keys(Keyring.unlock_with_recovery_code(path, code), keys)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_wrong_old_passphrase_changes_nothing(keyring):
    path, _, _ = keyring

    def change():
        with pytest.raises(WrongPassphrase, match="nothing was changed"):
            Keyring.change_passphrase(path, "not the passphrase", NEW)

    _unchanged(path, change)
    Keyring.unlock(path, OLD)


@pytest.mark.parametrize(
    "new, refused", [("", EmptyPassphrase), ("  ", EmptyPassphrase), (OLD, PassphraseUnchanged)]
)
def test_an_empty_or_unchanged_new_passphrase_is_refused(keyring, new, refused):
    path, _, _ = keyring

    def change():
        with pytest.raises(refused, match="Nothing was changed|nothing was changed"):
            Keyring.change_passphrase(path, OLD, new)

    _unchanged(path, change)


def test_recover_sets_a_new_passphrase_and_keeps_the_code(keyring):
    path, keys, code = keyring
    recovered = Keyring.recover(path, RecoveryCode.from_words(" ".join(code.words)), NEW)
    assert _same_keys(recovered, keys) and _same_keys(Keyring.unlock(path, NEW), keys)
    with pytest.raises(WrongPassphrase):
        Keyring.unlock(path, OLD)
    assert _same_keys(Keyring.unlock_with_recovery_code(path, code), keys)


def test_recovery_works_after_a_passphrase_change(keyring):
    path, keys, code = keyring
    Keyring.change_passphrase(path, OLD, NEW)
    Keyring.recover(path, code, "third passphrase")
    assert _same_keys(Keyring.unlock(path, "third passphrase"), keys)


def test_wrong_recovery_words_change_nothing(keyring):
    path, _, _ = keyring

    def recover():
        with pytest.raises(WrongRecoveryCode, match="not this node's"):
            Keyring.recover(path, RecoveryCode.generate(), NEW)

    _unchanged(path, recover)
    Keyring.unlock(path, OLD)


def test_a_new_recovery_code_replaces_the_old_one(keyring):
    path, keys, old_code = keyring
    new_code = RecoveryCode.generate()
    Keyring.set_recovery_code(path, OLD, new_code)
    with pytest.raises(WrongRecoveryCode):
        Keyring.unlock_with_recovery_code(path, old_code)
    assert _same_keys(Keyring.unlock_with_recovery_code(path, new_code), keys)
    assert _same_keys(Keyring.unlock(path, OLD), keys)  # the passphrase section untouched


def test_a_keyring_without_a_code_says_so(tmp_path):
    path = tmp_path / "keyring.json"
    Keyring.create(path, OLD)
    assert json.loads(path.read_text())["recovery"] is None
    assert Keyring.read_public(path)["recovery_code_created"] is None
    with pytest.raises(NoRecoveryCode, match="no-recovery-code"):
        Keyring.recover(path, RecoveryCode.generate(), NEW)


def test_neither_the_code_nor_its_words_reach_the_file(keyring):
    path, keys, code = keyring
    raw = path.read_bytes()
    for secret in (code.entropy, code.key_encryption_key(), keys.data_key):
        for encode in (bytes, bytes.hex, base64.b64encode):
            shown = encode(secret)
            assert (shown.encode() if isinstance(shown, str) else shown) not in raw
    assert not any(word.encode() in raw for word in code.words if len(word) > 4)
    assert Keyring.read_public(path)["recovery_code_created"].endswith("Z")
    assert code.entropy.hex() not in repr(code)


def test_a_stale_temporary_file_from_a_killed_change_is_cleared(keyring):
    path, _, _ = keyring
    stale = path.parent / ".keyring.json.abc123.tmp"
    stale.write_bytes(b"half of a keyring")
    Keyring.change_passphrase(path, OLD, NEW)
    assert not stale.exists()


def test_a_change_waits_for_another_in_progress(keyring):
    """Two changes at once would each read the old file, and the second rename would undo the
    first without a word; the writers' lock makes the second read what the first wrote."""
    path, keys, _ = keyring
    holder = os.open(path.with_name("keyring.json.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a first writer, between its read and its rename
    try:
        waiting = threading.Thread(target=Keyring.change_passphrase, args=(path, OLD, NEW))
        waiting.start()
        waiting.join(timeout=1.5)
        assert waiting.is_alive(), "the change did not wait for the lock"
        assert _same_keys(Keyring.unlock(path, OLD), keys)
    finally:
        os.close(holder)
    waiting.join(timeout=30)
    assert not waiting.is_alive()
    assert _same_keys(Keyring.unlock(path, NEW), keys)


# --- the words -----------------------------------------------------------------------------


def test_the_words_round_trip_as_a_person_types_them(keyring):
    _, _, code = keyring
    words = code.words
    assert len(words) == 24 and len(code.entropy) == 32
    numbered = "\n".join(f"{i:2}. {w.upper()}" for i, w in enumerate(words, 1))
    assert RecoveryCode.from_words(numbered) == code
    assert RecoveryCode.from_words("  ".join(w[:4] for w in words)) == code  # BIP-39 prefixes


def test_a_typo_is_named_before_any_key_is_derived(keyring, monkeypatch):
    _, _, code = keyring
    words = code.words
    # Deriving a key here would be a bug: the check must come first.
    monkeypatch.setattr(RecoveryCode, "key_encryption_key", lambda self: pytest.fail("derived"))

    swapped = [words[1], words[0], *words[2:]] if words[0] != words[1] else words[::-1]
    with pytest.raises(RecoveryCodeInvalid, match="checksum failed"):
        RecoveryCode.from_words(" ".join(swapped))
    other = "zoo" if words[5] != "zoo" else "abandon"
    with pytest.raises(RecoveryCodeInvalid, match="checksum failed"):
        RecoveryCode.from_words(" ".join([*words[:5], other, *words[6:]]))
    with pytest.raises(RecoveryCodeInvalid, match="'flurryx' is not in the recovery word list"):
        RecoveryCode.from_words(" ".join([*words[:-1], "flurryx"]))
    with pytest.raises(RecoveryCodeInvalid, match="24 words; 23 were given"):
        RecoveryCode.from_words(" ".join(words[:-1]))


# --- the file format -------------------------------------------------------------------------


def _rewrite(path: Path, change, *, fix_checksum: bool = True) -> None:
    document = json.loads(path.read_text())
    change(document)
    if fix_checksum:
        document["checksum"] = _checksum(document)
    path.write_text(json.dumps(document))


def _as_version_1(document: dict) -> None:
    document["version"] = 1
    del document["recovery"]


def test_a_version_1_keyring_still_unlocks_and_becomes_version_2_when_changed(tmp_path):
    path = tmp_path / "keyring.json"
    keys = Keyring.create(path, OLD)
    _rewrite(path, _as_version_1)
    assert list(json.loads(path.read_text())) == [
        "format",
        "version",
        "created",
        "owner_did",
        "node_did",
        "kdf",
        "sealed",
        "checksum",
    ]  # exactly the version 1 layout
    assert Keyring.read_public(path)["version"] == 1
    assert _same_keys(Keyring.unlock(path, OLD), keys)

    Keyring.change_passphrase(path, OLD, NEW)
    assert Keyring.read_public(path)["version"] == 2
    assert json.loads(path.read_text())["recovery"] is None
    code = RecoveryCode.generate()
    Keyring.set_recovery_code(path, NEW, code)
    assert _same_keys(Keyring.unlock_with_recovery_code(path, code), keys)


def _flip(sealed: dict) -> None:
    ciphertext = bytearray(base64.b64decode(sealed["ciphertext"]))
    ciphertext[3] ^= 0x01
    sealed["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["recovery"].update(kdf="argon2id"),
        lambda d: d["recovery"].update(created=0),
        lambda d: d["recovery"]["sealed"].pop("owner_key"),
        lambda d: d["recovery"]["sealed"]["node_key"].update(nonce="AAAA"),
        lambda d: d["recovery"]["sealed"]["data_key"].update(ciphertext="not base64!"),
        lambda d: d["recovery"].update(extra=1),
        lambda d: d.pop("recovery"),  # a version 2 file always names its recovery section
        lambda d: d.update(recovery="none"),
        lambda d: d.update(version=1),  # a version 1 file has no recovery section
    ],
)
def test_an_altered_recovery_section_is_reported_as_damage(keyring, change):
    path, _, code = keyring
    _rewrite(path, change)
    for read in (
        lambda: Keyring.read_public(path),
        lambda: Keyring.unlock(path, OLD),
        lambda: Keyring.unlock_with_recovery_code(path, code),
    ):
        with pytest.raises(KeyringCorrupt, match="damaged or was altered"):
            read()


def test_a_flipped_byte_in_the_recovery_section_is_caught_by_the_checksum(keyring):
    path, _, code = keyring
    _rewrite(path, lambda d: _flip(d["recovery"]["sealed"]["data_key"]), fix_checksum=False)
    with pytest.raises(KeyringCorrupt, match="checksum"):
        Keyring.unlock_with_recovery_code(path, code)


def test_a_forged_recovery_section_does_not_open(keyring):
    path, _, code = keyring
    # Anyone can recompute the checksum; GCM and the DID check are what refuse.
    _rewrite(path, lambda d: _flip(d["recovery"]["sealed"]["owner_key"]))
    with pytest.raises(KeyringCorrupt, match="sealed private key"):
        Keyring.unlock_with_recovery_code(path, code)


def test_sealed_blobs_cannot_move_between_the_two_sections(keyring):
    path, _, code = keyring

    def swap(document):
        document["sealed"], document["recovery"]["sealed"] = (
            document["recovery"]["sealed"],
            document["sealed"],
        )

    _rewrite(path, swap)
    # Each section opens only under its own KEK, with its own associated data.
    with pytest.raises(WrongPassphrase):
        Keyring.unlock(path, OLD)
    with pytest.raises(WrongRecoveryCode):
        Keyring.unlock_with_recovery_code(path, code)


# --- the command line ---------------------------------------------------------------------------


def _printed_words(output: str) -> str:
    """The 24 words as `flurry init` prints them: "  1 word   2 word …", four to a line."""
    numbered = re.findall(r"(\d+) ([a-z]+)", output.split("Recovery code", 1)[1])
    assert [int(n) for n, _ in numbered] == list(range(1, 25)), output
    return " ".join(word for _, word in numbered)


def test_the_code_printed_at_init_recovers_the_node_end_to_end(cli, tmp_path):
    from store.sealing import Sealer
    from store.vault import Vault

    made = cli("init")
    words = _printed_words(made.stdout)
    assert "flurry keeps no copy" in made.stdout and "flurry recover" in made.stdout
    assert words.split()[0] not in (cli.home / "keyring.json").read_text()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "boat.md").write_text("The sailing boat is moored at pier 7 in Aveiro.\n")
    cli("add", str(notes))
    before = json.loads(cli("status", "--json").stdout)

    # The passphrase is forgotten: the words, with a typo, then right.
    typo = words.replace(words.split()[3], "zoo" if words.split()[3] != "zoo" else "abandon", 1)
    refused = cli("recover", check=False, FLURRY_RECOVERY_CODE=typo, FLURRY_NEW_PASSPHRASE=NEW)
    assert refused.returncode == 1 and "checksum failed" in refused.stderr
    recovered = cli("recover", FLURRY_RECOVERY_CODE=words, FLURRY_NEW_PASSPHRASE=NEW)
    assert before["owner_did"] in recovered.stdout

    after = json.loads(cli("status", "--json", FLURRY_PASSPHRASE=NEW).stdout)
    assert (after["owner_did"], after["node_did"], after["documents"]) == (
        before["owner_did"],
        before["node_did"],
        1,
    )
    old = cli("status", check=False)
    assert old.returncode == 1 and "wrong passphrase" in old.stderr
    keys = Keyring.unlock(cli.home / "keyring.json", NEW)
    vault = Vault(cli.home / "vault.sqlite3", Sealer(keys.data_key))
    try:
        texts = [c.text for c in vault.get_chunks(sorted(vault.chunk_ids())).values()]
    finally:
        vault.close()
    assert any("moored at pier 7" in text for text in texts)
    # And the same words still work after the recovery they made.
    cli("recover", FLURRY_RECOVERY_CODE=words, FLURRY_NEW_PASSPHRASE="once more", check=True)
    Keyring.unlock(cli.home / "keyring.json", "once more")


def test_init_without_a_recovery_code_prints_none_and_recover_says_why(cli):
    made = cli("init", "--no-recovery-code")
    assert "Recovery code" not in made.stdout
    refused = cli(
        "recover",
        check=False,
        FLURRY_RECOVERY_CODE=" ".join(RecoveryCode.generate().words),
        FLURRY_NEW_PASSPHRASE=NEW,
    )
    assert refused.returncode == 1 and "no recovery code" in refused.stderr
    # A code can be made later, from the passphrase.
    words = _printed_words(cli("recovery-code", "new").stdout)
    cli("recover", FLURRY_RECOVERY_CODE=words, FLURRY_NEW_PASSPHRASE=NEW)
    Keyring.unlock(cli.home / "keyring.json", NEW)


def test_a_new_recovery_code_retires_the_old_words(cli):
    first = _printed_words(cli("init").stdout)
    made = cli("recovery-code", "new")
    assert "the old one no longer works" in made.stdout
    second = _printed_words(made.stdout)
    refused = cli("recover", check=False, FLURRY_RECOVERY_CODE=first, FLURRY_NEW_PASSPHRASE=NEW)
    assert refused.returncode == 1 and "not this node's" in refused.stderr
    Keyring.unlock(cli.home / "keyring.json", PASSPHRASE)  # nothing changed
    cli("recover", FLURRY_RECOVERY_CODE=second, FLURRY_NEW_PASSPHRASE=NEW)


def test_passphrase_change_on_the_command_line(cli, tmp_path):
    cli("init", "--no-recovery-code")
    keyring = cli.home / "keyring.json"
    before = keyring.read_bytes()
    for env, message in [
        ({"FLURRY_PASSPHRASE": "wrong", "FLURRY_NEW_PASSPHRASE": NEW}, "wrong passphrase"),
        ({"FLURRY_NEW_PASSPHRASE": ""}, "empty"),
        ({}, "FLURRY_NEW_PASSPHRASE"),  # no terminal to ask on: says how to give it
    ]:
        refused = cli("passphrase", "change", check=False, **env)
        assert refused.returncode == 1 and message in refused.stderr, refused.stderr
        assert keyring.read_bytes() == before
    new_file = tmp_path / "new-passphrase"
    new_file.write_text(NEW + "\n")
    cli("passphrase", "change", "--new-passphrase-file", str(new_file))
    Keyring.unlock(keyring, NEW)


def test_passphrase_change_while_the_node_serves(cli):
    """serve read the keyring at unlock and holds the keys: it goes on serving, and the
    owner's next command, signed with keys unlocked by the new passphrase, is accepted.
    (`flurry serve` is a process; the commands around it run in this one.)"""
    cli("init", "--no-recovery-code")
    with cli.serving():
        cli("passphrase", "change", FLURRY_NEW_PASSPHRASE=NEW)
        refused = cli("tokens", "create", "editor", check=False)
        assert refused.returncode == 1 and "wrong passphrase" in refused.stderr
        cli("tokens", "create", "editor", FLURRY_PASSPHRASE=NEW)
    assert "editor" in cli("tokens", "list", FLURRY_PASSPHRASE=NEW).stdout


# --- kill -9 at chosen moments ----------------------------------------------------------------

# Runs `flurry ARGS…` with os.replace wrapped to stop just before or just after the keyring's
# rename (the one moment the file changes) and wait there to be killed.
PAUSED_FLURRY = """
import os, sys, time
from pathlib import Path

moment, marker, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
real_replace = os.replace

def replace(src, dst, *rest, **options):
    ours = Path(dst).name == "keyring.json"
    if ours and moment == "before-rename":
        marker.touch()
        time.sleep(120)
    real_replace(src, dst, *rest, **options)
    if ours and moment == "after-rename":
        marker.touch()
        time.sleep(120)

os.replace = replace
from node.cli import cli
cli(args, prog_name="flurry")
"""


def _kill_at(moment: str, env: dict[str, str], marker: Path, *args: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSED_FLURRY, moment, str(marker), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the command never reached the rename"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "command, moment, opens",
    [
        ("passphrase change", "before-rename", OLD),
        ("passphrase change", "after-rename", NEW),
        ("recover", "before-rename", OLD),
    ],
    ids=["change-before-rename", "change-after-rename", "recover-before-rename"],
)
def test_a_change_killed_at_the_rename_leaves_one_passphrase_working(
    keyring, tmp_path, command, moment, opens
):
    path, keys, code = keyring
    env = {
        **os.environ,
        "FLURRY_HOME": str(path.parent),
        "FLURRY_PASSPHRASE": OLD,
        "FLURRY_NEW_PASSPHRASE": NEW,
        "FLURRY_RECOVERY_CODE": " ".join(code.words),
    }
    _kill_at(moment, env, tmp_path / "paused", *command.split())

    assert _same_keys(Keyring.unlock(path, opens), keys)
    with pytest.raises(WrongPassphrase):
        Keyring.unlock(path, NEW if opens == OLD else OLD)
    assert _same_keys(Keyring.unlock_with_recovery_code(path, code), keys)
    # Killed before its rename, the command left its sealed temporary file; the next change
    # clears it, and works.
    assert bool(list(path.parent.glob(".keyring.json.*.tmp"))) == (moment == "before-rename")
    Keyring.change_passphrase(path, opens, "after the crash")
    assert not list(path.parent.glob(".keyring.json.*.tmp"))


def test_a_home_with_a_version_1_keyring_still_opens_and_changes(cli):
    cli("init", "--no-recovery-code")
    keyring = cli.home / "keyring.json"
    _rewrite(keyring, _as_version_1)
    before = Keyring.read_public(keyring)
    assert before["version"] == 1
    assert json.loads(cli("status", "--json").stdout)["owner_did"] == before["owner_did"]
    cli("passphrase", "change", FLURRY_NEW_PASSPHRASE=NEW)
    assert Keyring.read_public(keyring)["version"] == 2
    assert (
        json.loads(cli("status", "--json", FLURRY_PASSPHRASE=NEW).stdout)["owner_did"]
        == (before["owner_did"])
    )
