"""The owner's keyring: one JSON file, sealed under the passphrase.

The passphrase goes through Argon2id to a key-encryption key (KEK). The KEK wraps a random
data key (the vault seals everything under it) and seals the two Ed25519 seeds: the
owner's, which is their DID, and the node's, which signs what the node does on their
behalf. The DIDs, the KDF parameters, the format version and the creation time stay in the
clear so that `flurry status` can show who this node is before anyone unlocks it.

File format, version 1 (bytes are base64):

    {
      "format": "flurry-keyring", "version": 1, "created": "2025-01-01T00:00:00Z",
      "owner_did": "did:key:z6Mk…", "node_did": "did:key:z6Mk…",
      "kdf": {"algorithm": "argon2id", "memory_kib": 65536, "iterations": 3, "lanes": 4,
              "salt": "…"},
      "sealed": {"data_key":  {"nonce": "…", "ciphertext": "…"},
                 "owner_key": {"nonce": "…", "ciphertext": "…"},
                 "node_key":  {"nonce": "…", "ciphertext": "…"}},
      "checksum": "sha256:…"
    }

After `flurry keys rotate` (identity.rotation), one more clear-text field, absent until then:

      "rotations": [statement, …]

the node's rotation statements, oldest first: each signed by the keys it retired and the
keys it named, the last one naming the file's ``owner_did`` and ``node_did``. Rotation
re-seals the two seeds under the same KEK and leaves the data key's sealed bytes as they were.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from identity.did_key import did_key_from_ed25519_public, ed25519_public_from_did_key
from identity.errors import IdentityError
from identity.nostr_key import NostrKey
from identity.rotation import MAX_LINKS, make_statement

FORMAT = "flurry-keyring"
FORMAT_VERSION = 1
KEY_LENGTH = 32
NONCE_LENGTH = 12
TAG_LENGTH = 16

# RFC 9106 §4, second recommended option, for machines without much memory to spare.
DEFAULT_KDF = {"algorithm": "argon2id", "memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}
SALT_LENGTH = 16
# A file can name its own KDF cost; this bounds what an altered file can make unlock spend.
MAX_KDF_MEMORY_KIB = 4 * 1024 * 1024
MAX_KDF_ITERATIONS = 64
MAX_KDF_LANES = 64

# Associated data names what each ciphertext is, so that one sealed blob cannot be moved into
# another's place (the node's key passed off as the owner's) without failing to open.
_DATA_KEY_AD = b"flurry-keyring v1: data key"
_OWNER_KEY_AD = b"flurry-keyring v1: owner Ed25519 seed"
_NODE_KEY_AD = b"flurry-keyring v1: node Ed25519 seed"


class KeyringError(IdentityError):
    """Something is wrong with the keyring file or how it was opened."""


class KeyringMissing(KeyringError):
    """No keyring file at the path: the node has not been initialised."""


class KeyringExists(KeyringError):
    """create() found a keyring already there and left it alone."""


class KeyringCorrupt(KeyringError):
    """The file is unreadable, damaged or altered; the right passphrase cannot fix it."""


class WrongPassphrase(KeyringError):
    """The passphrase does not open the keyring (or the sealed data key was altered)."""


class EmptyPassphrase(KeyringError):
    """create() was given an empty passphrase."""


@dataclass(frozen=True)
class UnlockedKeyring:
    """The keys, in memory only. repr never shows secret material."""

    path: Path
    owner_did: str
    node_did: str
    data_key: bytes = field(repr=False)
    owner_key: Ed25519PrivateKey = field(repr=False)
    node_key: Ed25519PrivateKey = field(repr=False)
    # The rotation statements (identity.rotation), oldest first; empty until the first rotation.
    rotations: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def nostr_key(self) -> NostrKey:
        """The node's Nostr key: derived from the sealed node seed (identity.nostr_key says why)."""
        return NostrKey.from_node_seed(self.node_key.private_bytes_raw())

    @property
    def nostr_public_key_hex(self) -> str:
        return self.nostr_key.public_key_hex


class Keyring:
    """Create, unlock and read the keyring file at a path."""

    @staticmethod
    def create(path: Path, passphrase: str) -> UnlockedKeyring:
        """Make a new keyring with fresh keys; refuse if one is already there."""
        path = Path(path)
        if not passphrase or not passphrase.strip():
            raise EmptyPassphrase(
                "the passphrase is empty; choose one you will remember, it cannot be recovered"
            )
        if path.exists():
            raise KeyringExists(
                f"a keyring already exists at {path}; unlock it, or move it away to start over"
            )
        data_key = os.urandom(KEY_LENGTH)
        owner_key = Ed25519PrivateKey.generate()
        node_key = Ed25519PrivateKey.generate()
        owner_did, node_did = _did_of(owner_key), _did_of(node_key)

        kdf = {**DEFAULT_KDF, "salt": _b64(os.urandom(SALT_LENGTH))}
        kek = AESGCM(_derive_kek(passphrase, kdf))
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "owner_did": owner_did,
            "node_did": node_did,
            "kdf": kdf,
            # The seeds are sealed under the KEK, not the data key: the data key is handed to
            # the vault, and nothing holding it should be able to sign as the owner.
            "sealed": {
                "data_key": _seal(kek, data_key, _DATA_KEY_AD),
                "owner_key": _seal(kek, owner_key.private_bytes_raw(), _OWNER_KEY_AD),
                "node_key": _seal(kek, node_key.private_bytes_raw(), _NODE_KEY_AD),
            },
        }
        document["checksum"] = _checksum(document)
        _write_atomically(path, json.dumps(document, indent=2).encode() + b"\n")
        return UnlockedKeyring(path, owner_did, node_did, data_key, owner_key, node_key)

    @staticmethod
    def unlock(path: Path, passphrase: str) -> UnlockedKeyring:
        """Open the keyring with the passphrase. Reads only; never writes."""
        path = Path(path)
        document = _load(path)
        kek = AESGCM(_derive_kek(passphrase, document["kdf"]))
        sealed = document["sealed"]
        try:
            data_key = _open(kek, sealed["data_key"], _DATA_KEY_AD)
        except InvalidTag:
            raise WrongPassphrase(f"wrong passphrase for {path}; nothing was changed") from None
        # The passphrase is right (the data key opened), so any failure from here on is damage.
        try:
            owner_seed = _open(kek, sealed["owner_key"], _OWNER_KEY_AD)
            node_seed = _open(kek, sealed["node_key"], _NODE_KEY_AD)
        except InvalidTag:
            raise _corrupt(path, "a sealed private key does not open") from None
        owner_key = Ed25519PrivateKey.from_private_bytes(owner_seed)
        node_key = Ed25519PrivateKey.from_private_bytes(node_seed)
        owner_did, node_did = document["owner_did"], document["node_did"]
        # The clear-text DIDs are what `flurry status` shows before unlock; an edited one
        # must not survive unlock to be believed afterwards.
        if (_did_of(owner_key), _did_of(node_key)) != (owner_did, node_did):
            raise _corrupt(path, "a DID in the file does not match its sealed key")
        rotations = tuple(document.get("rotations", ()))
        latest = rotations[-1]["next"] if rotations else {"owner": owner_did, "node": node_did}
        if (latest.get("owner"), latest.get("node")) != (owner_did, node_did):
            raise _corrupt(path, "the last rotation statement does not name the keys in the file")
        return UnlockedKeyring(path, owner_did, node_did, data_key, owner_key, node_key, rotations)

    @staticmethod
    def rotate(path: Path, passphrase: str) -> UnlockedKeyring:
        """Replace the owner and node keys by new ones, keeping the data key, and add the
        signed statement that says so (identity.rotation) to the file's ``rotations``.

        One atomic write: a crash leaves the old keys or the new ones with their statement.
        Raises WrongPassphrase (nothing written) or KeyringError when the chain is full."""
        path = Path(path)
        old = Keyring.unlock(path, passphrase)
        document = _load(path)
        rotations = list(document.get("rotations", []))
        if len(rotations) >= MAX_LINKS:
            raise KeyringError(
                f"this node has rotated its keys {len(rotations)} times, as many as peers accept "
                "in one chain; start a new node instead"
            )
        owner_key, node_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        statement = make_statement(old.owner_key, old.node_key, owner_key, node_key)
        # The KEK is derived again rather than carried out of unlock: it never leaves this module's
        # functions, and a rotation is rare enough to pay one more Argon2id run.
        kek = AESGCM(_derive_kek(passphrase, document["kdf"]))
        document["owner_did"], document["node_did"] = _did_of(owner_key), _did_of(node_key)
        document["sealed"] = {
            **document["sealed"],
            "owner_key": _seal(kek, owner_key.private_bytes_raw(), _OWNER_KEY_AD),
            "node_key": _seal(kek, node_key.private_bytes_raw(), _NODE_KEY_AD),
        }
        document["rotations"] = [*rotations, statement]
        document["checksum"] = _checksum(document)
        _write_atomically(path, json.dumps(document, indent=2).encode() + b"\n")
        return UnlockedKeyring(
            path,
            document["owner_did"],
            document["node_did"],
            old.data_key,
            owner_key,
            node_key,
            tuple(document["rotations"]),
        )

    @staticmethod
    def read_public(path: Path) -> dict[str, Any]:
        """The public facts (DIDs, version, creation time, rotations), without the passphrase."""
        document = _load(Path(path))
        public = {key: document[key] for key in ("owner_did", "node_did", "version", "created")}
        return {**public, "rotations": document.get("rotations", [])}


def _load(path: Path) -> dict[str, Any]:
    """Read and check the file's shape; raise KeyringMissing or KeyringCorrupt."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyringMissing(f"no keyring at {path}; run `flurry init` to create one") from None
    try:
        document = json.loads(raw)
    except ValueError:
        raise _corrupt(path, "it is not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _corrupt(path, "it is not a flurry keyring")
    if document.get("version") != FORMAT_VERSION:
        raise _corrupt(
            path,
            f"format version {document.get('version')!r} is not {FORMAT_VERSION} "
            "(was it written by a newer flurry?)",
        )
    if document.get("checksum") != _checksum(document):
        raise _corrupt(path, "its checksum does not match its contents")
    if not _has_valid_shape(document):
        raise _corrupt(path, "a field is missing or malformed")
    return document


def _has_valid_shape(document: dict[str, Any]) -> bool:
    """Whether every field unlock reads is there, with a sane type and size."""
    try:
        kdf, sealed = document["kdf"], document["sealed"]
        for did in (document["owner_did"], document["node_did"]):
            ed25519_public_from_did_key(did)
        costs = [kdf["memory_kib"], kdf["iterations"], kdf["lanes"]]
        return (
            isinstance(document["created"], str)
            and kdf["algorithm"] == "argon2id"
            and len(_unb64(kdf["salt"])) >= SALT_LENGTH
            and all(type(cost) is int for cost in costs)
            and 1 <= kdf["lanes"] <= MAX_KDF_LANES
            and 8 * kdf["lanes"] <= kdf["memory_kib"] <= MAX_KDF_MEMORY_KIB
            and 1 <= kdf["iterations"] <= MAX_KDF_ITERATIONS
            and _has_valid_rotations(document.get("rotations", []))
            and all(
                len(_unb64(sealed[name]["nonce"])) == NONCE_LENGTH
                and len(_unb64(sealed[name]["ciphertext"])) == KEY_LENGTH + TAG_LENGTH
                for name in ("data_key", "owner_key", "node_key")
            )
        )
    except (KeyError, TypeError, ValueError):  # ValueError covers bad base64 and InvalidDID
        return False


def _has_valid_rotations(rotations: object) -> bool:
    """The shape unlock relies on; the statements' signatures are identity.rotation's to check."""
    return (
        isinstance(rotations, list)
        and len(rotations) <= MAX_LINKS
        and all(
            isinstance(statement, dict) and isinstance(statement.get("next"), dict)
            for statement in rotations
        )
    )


def _corrupt(path: Path, reason: str) -> KeyringCorrupt:
    return KeyringCorrupt(
        f"the keyring at {path} is damaged or was altered ({reason}); "
        "restore it from a backup. Nothing was changed."
    )


def _checksum(document: dict[str, Any]) -> str:
    """SHA-256 over everything but the checksum itself.

    Not a security measure (anyone who can edit the file can recompute it): GCM already
    refuses altered ciphertext. It is here so that a damaged file is reported as damaged,
    not as a wrong passphrase, which the owner would otherwise keep retyping.
    """
    body = {key: value for key, value in document.items() if key != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _derive_kek(passphrase: str, kdf: dict[str, Any]) -> bytes:
    # NFC so that the same passphrase typed on another keyboard or OS gives the same bytes.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return Argon2id(
        salt=_unb64(kdf["salt"]),
        length=KEY_LENGTH,
        iterations=kdf["iterations"],
        lanes=kdf["lanes"],
        memory_cost=kdf["memory_kib"],
    ).derive(secret)


def _seal(aead: AESGCM, plaintext: bytes, associated_data: bytes) -> dict[str, Any]:
    nonce = os.urandom(NONCE_LENGTH)
    ciphertext = aead.encrypt(nonce, plaintext, associated_data)
    return {"nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}


def _open(aead: AESGCM, sealed: dict[str, Any], associated_data: bytes) -> bytes:
    return aead.decrypt(_unb64(sealed["nonce"]), _unb64(sealed["ciphertext"]), associated_data)


def _did_of(key: Ed25519PrivateKey) -> str:
    return did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a 0600 file so that a crash leaves either the old file or the new one, whole."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp_file:
            os.chmod(temp_name, 0o600)  # mkstemp already does; said again because it matters
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    # The rename itself lives in the directory; sync it too, where the OS allows.
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
