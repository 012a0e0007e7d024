"""identity/: did:key against the w3c-ccg/did-method-key vectors, and the sealed keyring."""

from __future__ import annotations

import base64
import binascii
import json
import shutil
from pathlib import Path

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from identity.did_key import (
    InvalidDID,
    did_document,
    did_key_from_ed25519_public,
    ed25519_public_from_did_key,
    verification_method_id,
    x25519_fingerprint,
    x25519_private_from_ed25519_seed,
    x25519_public_from_ed25519_public,
)
from identity.keyring import (
    EmptyPassphrase,
    Keyring,
    KeyringCorrupt,
    KeyringError,
    KeyringExists,
    KeyringMissing,
    WrongPassphrase,
    _checksum,
)

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "did-key-ed25519-x25519.json").read_text()
)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _keys_of(vector: dict) -> dict[str, bytes]:
    """The vector's raw keys, whichever of its two representations it uses."""
    signing, agreement = vector["verificationKeyPair"], vector["keyAgreementKeyPair"]
    if "publicKeyBase58" in signing:
        return {
            "ed25519_public": base58.b58decode(signing["publicKeyBase58"]),
            "x25519_public": base58.b58decode(agreement["publicKeyBase58"]),
            "x25519_private": base58.b58decode(agreement["privateKeyBase58"]),
        }
    return {
        "ed25519_public": _b64url(signing["publicKeyJwk"]["x"]),
        "x25519_public": _b64url(agreement["publicKeyJwk"]["x"]),
        "x25519_private": _b64url(agreement["privateKeyJwk"]["d"]),
    }


# Four vectors are in the Ed25519VerificationKey2018 form (our default), one in the
# JsonWebKey2020 form (the did:key method's other publicKeyFormat).
BASE58_VECTORS = {
    did: v for did, v in VECTORS.items() if "publicKeyBase58" in v["verificationKeyPair"]
}


def test_vector_file_is_the_one_we_expect():
    assert len(VECTORS) == 5
    assert len(BASE58_VECTORS) == 4


@pytest.mark.parametrize("did", VECTORS)
def test_seed_gives_the_vectors_keys_and_did(did):
    vector = VECTORS[did]
    keys = _keys_of(vector)
    seed = bytes.fromhex(vector["seed"])
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()

    assert public == keys["ed25519_public"]
    assert did_key_from_ed25519_public(public) == did
    assert ed25519_public_from_did_key(did) == public
    assert x25519_private_from_ed25519_seed(seed) == keys["x25519_private"]
    assert x25519_public_from_ed25519_public(public) == keys["x25519_public"]
    # The converted public key and the converted private key are one X25519 key pair.
    x25519_private = X25519PrivateKey.from_private_bytes(keys["x25519_private"])
    assert x25519_private.public_key().public_bytes_raw() == keys["x25519_public"]
    fingerprint = x25519_fingerprint(keys["x25519_public"])
    assert fingerprint.startswith("z6LS")
    assert vector["keyAgreementKeyPair"]["id"].endswith("#" + fingerprint)


@pytest.mark.parametrize("did", BASE58_VECTORS)
def test_did_document_matches_vector(did):
    expected = BASE58_VECTORS[did]["didDocument"]
    assert did_document(did) == expected
    assert verification_method_id(did) == expected["verificationMethod"][0]["id"]
    assert did_document(verification_method_id(did)) == expected


@pytest.mark.parametrize("did", [d for d in VECTORS if d not in BASE58_VECTORS])
def test_jwk_did_document_matches_vector(did):
    assert did_document(did, key_format="JsonWebKey2020") == VECTORS[did]["didDocument"]


@pytest.mark.parametrize("did", VECTORS)
def test_did_url_of_the_signing_key_resolves_to_the_same_key(did):
    method_id = verification_method_id(did)
    assert method_id == f"{did}#{did.removeprefix('did:key:')}"
    assert ed25519_public_from_did_key(method_id) == ed25519_public_from_did_key(did)


GOOD_DID = next(iter(VECTORS))
GOOD_FINGERPRINT = GOOD_DID.removeprefix("did:key:")


def _did_with(multicodec: bytes, key: bytes) -> str:
    return "did:key:z" + base58.b58encode(multicodec + key).decode()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "hello",
        "did:web:example.com",  # another method
        "did:key:" + GOOD_FINGERPRINT[1:],  # no multibase prefix
        "did:key:f" + GOOD_FINGERPRINT[1:],  # wrong multibase prefix
        "did:key:z6Mk0OIl",  # not base58 (0, O, I and l are outside the alphabet)
        "did:key:z",  # nothing after the prefix
        GOOD_DID + " ",  # the base58 library would forgive this; we do not
        _did_with(b"\xec\x01", bytes(32)),  # X25519, not Ed25519
        _did_with(b"\xe7\x01", bytes(33)),  # secp256k1
        _did_with(b"\xed\x01", bytes(31)),  # too short
        _did_with(b"\xed\x01", bytes(33)),  # too long
        GOOD_DID + "#z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",  # not the signing key
        "did:key:z" + "1" * 1000,  # far too long to be worth decoding
    ],
)
def test_bad_dids_are_refused(bad):
    with pytest.raises(InvalidDID) as refused:
        ed25519_public_from_did_key(bad)
    assert isinstance(refused.value, ValueError)
    with pytest.raises(InvalidDID):
        did_document(bad)


def test_keys_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError):
        did_key_from_ed25519_public(bytes(31))
    with pytest.raises(ValueError):
        x25519_private_from_ed25519_seed(bytes(33))


def test_identity_point_has_no_x25519_key():
    identity_point = (1).to_bytes(32, "little")
    with pytest.raises(ValueError):
        x25519_public_from_ed25519_public(identity_point)
    with pytest.raises(InvalidDID, match="identity point"):
        did_document(_did_with(b"\xed\x01", identity_point))


# --- keyring ---------------------------------------------------------------------------

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def created(tmp_path_factory):
    """One keyring for the module: Argon2id at 64 MiB costs a fraction of a second each time."""
    path = tmp_path_factory.mktemp("keyring") / "keyring.json"
    return path, Keyring.create(path, PASSPHRASE)


@pytest.fixture
def keyring_path(created, tmp_path):
    """A private copy of the module's keyring file, free to damage."""
    path = tmp_path / "keyring.json"
    shutil.copy2(created[0], path)
    return path


def _rewrite(path: Path, change, *, fix_checksum: bool) -> None:
    document = json.loads(path.read_text())
    change(document)
    if fix_checksum:
        document["checksum"] = _checksum(document)
    path.write_text(json.dumps(document))


def test_create_then_unlock_gives_the_same_keys(created):
    path, made = created
    unlocked = Keyring.unlock(path, PASSPHRASE)

    assert len(unlocked.data_key) == 32
    assert unlocked.data_key == made.data_key
    assert unlocked.owner_did == made.owner_did != unlocked.node_did == made.node_did
    assert unlocked.owner_key.private_bytes_raw() == made.owner_key.private_bytes_raw()
    assert unlocked.node_key.private_bytes_raw() == made.node_key.private_bytes_raw()
    # The owner's DID verifies what the unlocked owner key signs.
    signature = unlocked.owner_key.sign(b"hello")
    public = Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(unlocked.owner_did))
    public.verify(signature, b"hello")
    assert made.data_key.hex() not in repr(unlocked)


def test_keyring_file_is_private_and_records_its_kdf(created):
    path, made = created
    assert path.stat().st_mode & 0o777 == 0o600
    document = json.loads(path.read_text())
    assert document["kdf"]["algorithm"] == "argon2id"
    assert (document["kdf"]["memory_kib"], document["kdf"]["iterations"]) == (65536, 3)
    assert document["kdf"]["lanes"] == 4
    assert len(base64.b64decode(document["kdf"]["salt"])) == 16
    assert [p.name for p in path.parent.iterdir()] == ["keyring.json"]  # no temp files left


def test_public_facts_are_readable_without_the_passphrase(created):
    path, made = created
    public = Keyring.read_public(path)
    assert public["owner_did"] == made.owner_did
    assert public["node_did"] == made.node_did
    assert public["version"] == 2
    assert public["created"].endswith("Z")


def test_secrets_never_reach_the_file(created):
    path, made = created
    raw = path.read_bytes()
    secrets = [
        made.data_key,
        made.owner_key.private_bytes_raw(),
        made.node_key.private_bytes_raw(),
    ]
    encodings = [
        bytes,
        binascii.hexlify,
        base64.b64encode,
        base64.urlsafe_b64encode,
        base58.b58encode,
    ]
    for secret in secrets:
        for encode in encodings:
            assert encode(secret) not in raw
            assert encode(secret[:16]) not in raw
    assert PASSPHRASE.encode() not in raw
    assert b"correct horse" not in raw


def test_wrong_passphrase_raises_and_changes_nothing(keyring_path):
    before_bytes = keyring_path.read_bytes()
    before_mtime = keyring_path.stat().st_mtime_ns

    with pytest.raises(WrongPassphrase) as refused:
        Keyring.unlock(keyring_path, "incorrect horse battery staple")

    assert str(refused.value) == f"wrong passphrase for {keyring_path}; nothing was changed"
    assert keyring_path.read_bytes() == before_bytes
    assert keyring_path.stat().st_mtime_ns == before_mtime
    assert [p.name for p in keyring_path.parent.iterdir()] == ["keyring.json"]


def _flip_a_byte_of_the_wrapped_data_key(document: dict) -> None:
    sealed = document["sealed"]["data_key"]
    ciphertext = bytearray(base64.b64decode(sealed["ciphertext"]))
    ciphertext[5] ^= 0x01
    sealed["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()


def test_flipped_byte_in_wrapped_key_is_reported_as_damage(keyring_path):
    _rewrite(keyring_path, _flip_a_byte_of_the_wrapped_data_key, fix_checksum=False)
    with pytest.raises(KeyringCorrupt) as refused:
        Keyring.unlock(keyring_path, PASSPHRASE)
    assert str(keyring_path) in str(refused.value)
    assert "damaged or was altered" in str(refused.value)


def test_flipped_byte_with_a_forged_checksum_still_does_not_open(keyring_path):
    # Anyone can recompute the checksum; GCM is what refuses the altered ciphertext.
    _rewrite(keyring_path, _flip_a_byte_of_the_wrapped_data_key, fix_checksum=True)
    with pytest.raises((WrongPassphrase, KeyringCorrupt)) as refused:
        Keyring.unlock(keyring_path, PASSPHRASE)
    assert str(keyring_path) in str(refused.value)


def test_owner_and_node_keys_cannot_be_swapped(keyring_path):
    def swap(document):
        sealed = document["sealed"]
        sealed["owner_key"], sealed["node_key"] = sealed["node_key"], sealed["owner_key"]

    _rewrite(keyring_path, swap, fix_checksum=True)
    with pytest.raises(KeyringCorrupt):
        Keyring.unlock(keyring_path, PASSPHRASE)


def test_a_substituted_owner_did_is_caught_at_unlock(keyring_path):
    def substitute(document):
        document["owner_did"] = GOOD_DID

    _rewrite(keyring_path, substitute, fix_checksum=True)
    with pytest.raises(KeyringCorrupt):
        Keyring.unlock(keyring_path, PASSPHRASE)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["kdf"].update(memory_kib=1 << 40),  # would make unlock hang or fail
        lambda d: d["kdf"].update(iterations="3"),
        lambda d: d["sealed"].pop("node_key"),
        lambda d: d["sealed"]["data_key"].update(nonce="not base64!"),
        lambda d: d.update(owner_did="did:web:example.com"),
    ],
)
def test_malformed_fields_are_reported_as_damage(keyring_path, change):
    _rewrite(keyring_path, change, fix_checksum=True)
    with pytest.raises(KeyringCorrupt):
        Keyring.unlock(keyring_path, PASSPHRASE)
    with pytest.raises(KeyringCorrupt):
        Keyring.read_public(keyring_path)


@pytest.mark.parametrize("content", [b"", b"{not json", b"[]", b'{"format": "something else"}'])
def test_unreadable_file_is_corrupt(tmp_path, content):
    path = tmp_path / "keyring.json"
    path.write_bytes(content)
    with pytest.raises(KeyringCorrupt):
        Keyring.unlock(path, PASSPHRASE)


def test_newer_format_version_is_refused_by_name(keyring_path):
    _rewrite(keyring_path, lambda d: d.update(version=3), fix_checksum=True)
    with pytest.raises(KeyringCorrupt, match="version 3"):
        Keyring.read_public(keyring_path)


def test_missing_keyring_says_to_run_init(tmp_path):
    with pytest.raises(KeyringMissing, match="flurry init"):
        Keyring.unlock(tmp_path / "nowhere.json", PASSPHRASE)
    with pytest.raises(KeyringMissing):
        Keyring.read_public(tmp_path / "nowhere.json")


def test_create_refuses_to_overwrite(keyring_path):
    before = keyring_path.read_bytes()
    with pytest.raises(KeyringExists):
        Keyring.create(keyring_path, "another passphrase")
    assert keyring_path.read_bytes() == before


def test_passphrase_is_unicode_normalised(tmp_path):
    # "café" typed as one code point for é, then as e + combining accent.
    path = tmp_path / "keyring.json"
    made = Keyring.create(path, "caf\u00e9 au lait")
    assert Keyring.unlock(path, "cafe\u0301 au lait").owner_did == made.owner_did


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_passphrase_is_refused(tmp_path, empty):
    path = tmp_path / "keyring.json"
    with pytest.raises(EmptyPassphrase, match="empty"):
        Keyring.create(path, empty)
    assert not path.exists()


def test_keyring_errors_share_one_base():
    for error in (KeyringMissing, KeyringExists, KeyringCorrupt, WrongPassphrase, EmptyPassphrase):
        assert issubclass(error, KeyringError)
