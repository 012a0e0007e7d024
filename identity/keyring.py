"""The owner's keyring: one JSON file, sealed under the passphrase (and the recovery code).

The passphrase goes through Argon2id to a key-encryption key (KEK). The KEK wraps a random
data key (the vault seals everything under it) and seals the two Ed25519 seeds: the
owner's, which is their DID, and the node's, which signs what the node does on their
behalf. The DIDs, the KDF parameters, the format version and the creation time stay in the
clear so that `flurry status` can show who this node is before anyone unlocks it.

A recovery code (identity.recovery_code: 24 words, 256 random bits) derives a second KEK by
HKDF-SHA256, which seals the same three secrets again in the "recovery" section. Either KEK
opens the node; changing one leaves the other as it was. Nothing is ever re-encrypted but
these few wrapped keys: the vault's data key stays the same for the life of the node.

File format, version 2 (bytes are base64; version 1 is the same without "recovery", and is
still read; any change rewrites it as version 2):

    {
      "format": "flurry-keyring", "version": 2, "created": "2025-01-01T00:00:00Z",
      "owner_did": "did:key:z6Mk…", "node_did": "did:key:z6Mk…",
      "kdf": {"algorithm": "argon2id", "memory_kib": 65536, "iterations": 3, "lanes": 4,
              "salt": "…"},
      "sealed": {"data_key":  {"nonce": "…", "ciphertext": "…"},
                 "owner_key": {"nonce": "…", "ciphertext": "…"},
                 "node_key":  {"nonce": "…", "ciphertext": "…"}},
      "recovery": null, or
                  {"kdf": "hkdf-sha256", "created": "2025-01-01T00:00:00Z",
                   "sealed": {"data_key": {…}, "owner_key": {…}, "node_key": {…}}},
      "checksum": "sha256:…"
    }

Every change (a new passphrase, a new recovery code, recovery) reads the file, checks it,
and writes the whole new file beside it, fsyncs and renames it over the old one: a process
killed at any moment leaves the old file or the new one, each complete and each opening
with what opened it before (or after). Writers take a lock (keyring.json.lock) so that two
changes at once cannot silently undo one another.

After `flurry keys rotate` (identity.rotation), one more clear-text field, absent until then:

      "rotations": [statement, …]

the node's rotation statements, oldest first: each signed by the keys it retired and the
keys it named, the last one naming the file's ``owner_did`` and ``node_did``. Rotation
re-seals the two seeds under the same KEK and leaves the data key's sealed bytes as they were;
a recovery section is replaced by one under a new recovery code, since the old code's copy of
the seeds would bring the retired keys back.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
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
from identity.recovery_code import RecoveryCode
from identity.rotation import MAX_LINKS, make_statement

FORMAT = "flurry-keyring"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
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
_PASSPHRASE_ADS = (_DATA_KEY_AD, _OWNER_KEY_AD, _NODE_KEY_AD)
# The recovery section's own: a blob sealed under one KEK cannot pass for the other's either.
_RECOVERY_ADS = (
    b"flurry-keyring v2 recovery: data key",
    b"flurry-keyring v2 recovery: owner Ed25519 seed",
    b"flurry-keyring v2 recovery: node Ed25519 seed",
)
_SEALED_NAMES = ("data_key", "owner_key", "node_key")
RECOVERY_KDF = "hkdf-sha256"


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
    """create() or a change was given an empty passphrase."""


class PassphraseUnchanged(KeyringError):
    """change_passphrase() was given the passphrase it already has."""


class NoRecoveryCode(KeyringError):
    """The keyring has no recovery section: it was made without a recovery code."""


class WrongRecoveryCode(KeyringError):
    """A well-formed recovery code that does not open this keyring (replaced, or another node's)."""


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
    def create(
        path: Path, passphrase: str, recovery_code: RecoveryCode | None = None
    ) -> UnlockedKeyring:
        """Make a new keyring with fresh keys, sealed under the passphrase and, if given, the
        recovery code too (in the same single write); refuse if one is already there."""
        path = Path(path)
        _refuse_empty(passphrase)
        if path.exists():
            raise KeyringExists(
                f"a keyring already exists at {path}; unlock it, or move it away to start over"
            )
        data_key = os.urandom(KEY_LENGTH)
        owner_key = Ed25519PrivateKey.generate()
        node_key = Ed25519PrivateKey.generate()
        owner_did, node_did = _did_of(owner_key), _did_of(node_key)
        keys = UnlockedKeyring(path, owner_did, node_did, data_key, owner_key, node_key)
        document: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": _now(),
            "owner_did": owner_did,
            "node_did": node_did,
        }
        _seal_under_passphrase(document, keys, passphrase)
        document["recovery"] = _recovery_section(keys, recovery_code) if recovery_code else None
        document["checksum"] = _checksum(document)
        _write_atomically(path, _serialise(document))
        return keys

    @staticmethod
    def unlock(path: Path, passphrase: str) -> UnlockedKeyring:
        """Open the keyring with the passphrase. Reads only; never writes."""
        path = Path(path)
        return _unlock_with_passphrase(path, _load(path), passphrase)

    @staticmethod
    def unlock_with_recovery_code(path: Path, code: RecoveryCode) -> UnlockedKeyring:
        """Open the keyring with its recovery code. Reads only; never writes."""
        path = Path(path)
        return _unlock_with_recovery_code(path, _load(path), code)

    @staticmethod
    def read_public(path: Path) -> dict[str, Any]:
        """The public facts (DIDs, version, creation time, when the recovery code was made),
        without the passphrase."""
        document = _load(Path(path))
        public = {key: document[key] for key in ("owner_did", "node_did", "version", "created")}
        recovery = document.get("recovery")
        public["recovery_code_created"] = recovery["created"] if recovery else None
        public["rotations"] = document.get("rotations", [])
        return public

    @staticmethod
    def change_passphrase(path: Path, old: str, new: str) -> UnlockedKeyring:
        """Wrap the same keys under a KEK from the new passphrase and a fresh salt.

        The recovery section is kept as it is: the recovery code goes on working."""
        _refuse_empty(new)
        if _normalise(new) == _normalise(old):
            raise PassphraseUnchanged("the new passphrase is the old one; nothing was changed")

        def change(document: dict[str, Any]) -> UnlockedKeyring:
            keys = _unlock_with_passphrase(Path(path), document, old)
            _seal_under_passphrase(document, keys, new)
            return keys

        return _update(Path(path), change)

    @staticmethod
    def recover(path: Path, code: RecoveryCode, new_passphrase: str) -> UnlockedKeyring:
        """Open the keyring with the recovery code and set a new passphrase.

        The recovery section is kept as it is: the same code goes on working."""
        _refuse_empty(new_passphrase)

        def change(document: dict[str, Any]) -> UnlockedKeyring:
            keys = _unlock_with_recovery_code(Path(path), document, code)
            _seal_under_passphrase(document, keys, new_passphrase)
            return keys

        return _update(Path(path), change)

    @staticmethod
    def set_recovery_code(path: Path, passphrase: str, code: RecoveryCode) -> UnlockedKeyring:
        """Seal the keys under the recovery code, replacing any earlier code (which then no
        longer opens anything). The passphrase section is kept as it is."""

        def change(document: dict[str, Any]) -> UnlockedKeyring:
            keys = _unlock_with_passphrase(Path(path), document, passphrase)
            document["recovery"] = _recovery_section(keys, code)
            return keys

        return _update(Path(path), change)

    @staticmethod
    def rotate(
        path: Path, passphrase: str, recovery_code: RecoveryCode | None = None
    ) -> UnlockedKeyring:
        """Replace the owner and node keys by new ones, keeping the data key, and add the
        signed statement that says so (identity.rotation) to the file's ``rotations``.

        A keyring with a recovery code needs a new one (``recovery_code``): the old code's
        section holds the retired seeds, and recovering with it would bring them back.
        One atomic write: a crash leaves the old keys or the new ones with their statement.
        Raises WrongPassphrase (nothing written) or KeyringError when the chain is full."""
        path = Path(path)

        def change(document: dict[str, Any]) -> UnlockedKeyring:
            old = _unlock_with_passphrase(path, document, passphrase)
            rotations = list(document.get("rotations", []))
            if len(rotations) >= MAX_LINKS:
                raise KeyringError(
                    f"this node has rotated its keys {len(rotations)} times, as many as peers "
                    "accept in one chain; start a new node instead"
                )
            if document.get("recovery") and recovery_code is None:
                raise KeyringError(
                    "this keyring has a recovery code, which holds the keys being retired: "
                    "rotating needs a new recovery code; nothing was changed"
                )
            owner_key, node_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
            statement = make_statement(old.owner_key, old.node_key, owner_key, node_key)
            document["owner_did"], document["node_did"] = _did_of(owner_key), _did_of(node_key)
            document["rotations"] = [*rotations, statement]
            new = UnlockedKeyring(
                path,
                document["owner_did"],
                document["node_did"],
                old.data_key,
                owner_key,
                node_key,
                tuple(document["rotations"]),
            )
            # A fresh salt too: the same passphrase, every secret wrapped anew.
            _seal_under_passphrase(document, new, passphrase)
            if document.get("recovery"):
                assert recovery_code is not None  # refused above
                document["recovery"] = _recovery_section(new, recovery_code)
            return new

        return _update(path, change)


def _unlock_with_passphrase(
    path: Path, document: dict[str, Any], passphrase: str
) -> UnlockedKeyring:
    kek = AESGCM(_derive_kek(passphrase, document["kdf"]))
    wrong = WrongPassphrase(f"wrong passphrase for {path}; nothing was changed")
    return _open_keys(path, document, kek, document["sealed"], _PASSPHRASE_ADS, wrong)


def _unlock_with_recovery_code(
    path: Path, document: dict[str, Any], code: RecoveryCode
) -> UnlockedKeyring:
    recovery = document.get("recovery")
    if not recovery:
        raise NoRecoveryCode(
            f"the keyring at {path} has no recovery code (the node was made with "
            "--no-recovery-code, or before flurry had them); nothing was changed"
        )
    wrong = WrongRecoveryCode(
        "these words are a well-formed recovery code, but not this node's (an older code, "
        "replaced by `flurry recovery-code new`, or another node's); nothing was changed"
    )
    kek = AESGCM(code.key_encryption_key())
    return _open_keys(path, document, kek, recovery["sealed"], _RECOVERY_ADS, wrong)


def _open_keys(
    path: Path,
    document: dict[str, Any],
    kek: AESGCM,
    sealed: dict[str, Any],
    ads: tuple[bytes, bytes, bytes],
    wrong: KeyringError,
) -> UnlockedKeyring:
    try:
        data_key = _open(kek, sealed["data_key"], ads[0])
    except InvalidTag:
        raise wrong from None
    # The secret is right (the data key opened), so any failure from here on is damage.
    try:
        owner_seed = _open(kek, sealed["owner_key"], ads[1])
        node_seed = _open(kek, sealed["node_key"], ads[2])
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


def _seal_under_passphrase(
    document: dict[str, Any], keys: UnlockedKeyring, passphrase: str
) -> None:
    """Set the passphrase's KDF (a fresh salt) and the three secrets sealed under its KEK."""
    kdf = {**DEFAULT_KDF, "salt": _b64(os.urandom(SALT_LENGTH))}
    kek = AESGCM(_derive_kek(passphrase, kdf))
    document["kdf"] = kdf
    # The seeds are sealed under the KEK, not the data key: the data key is handed to
    # the vault, and nothing holding it should be able to sign as the owner.
    document["sealed"] = _seal_keys(kek, keys, _PASSPHRASE_ADS)


def _recovery_section(keys: UnlockedKeyring, code: RecoveryCode) -> dict[str, Any]:
    kek = AESGCM(code.key_encryption_key())
    return {"kdf": RECOVERY_KDF, "created": _now(), "sealed": _seal_keys(kek, keys, _RECOVERY_ADS)}


def _seal_keys(
    kek: AESGCM, keys: UnlockedKeyring, ads: tuple[bytes, bytes, bytes]
) -> dict[str, Any]:
    secrets = (keys.data_key, keys.owner_key.private_bytes_raw(), keys.node_key.private_bytes_raw())
    return {
        name: _seal(kek, secret, ad)
        for name, secret, ad in zip(_SEALED_NAMES, secrets, ads, strict=True)
    }


def _update(path: Path, change: Callable[[dict[str, Any]], UnlockedKeyring]) -> UnlockedKeyring:
    """Read the file, let ``change`` unlock and alter it, and write it back as the current
    version, whole, in one rename. Raises before writing anything if ``change`` raises."""
    with _writer_lock(path):
        document = _load(path)
        keys = change(document)
        document.pop("checksum")
        document["version"] = FORMAT_VERSION
        document.setdefault("recovery", None)
        document["checksum"] = _checksum(document)
        _write_atomically(path, _serialise(document))
    return keys


@contextlib.contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    """One writer at a time: two changes at once (a new passphrase and a new recovery code)
    would each read the old file and the second rename would undo the first, silently.

    A lock file beside the keyring, not the keyring itself: the keyring is replaced by
    rename, and a lock on the old file would not stop a writer that opens the new one."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Holding the lock, no other writer is between its write and its rename: a temporary
        # file left here is from one that was killed. It holds only sealed keys, but it is
        # litter the owner did not ask for.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _refuse_empty(passphrase: str) -> None:
    if not passphrase or not passphrase.strip():
        raise EmptyPassphrase(
            "the passphrase is empty; choose one you will remember. Nothing was changed"
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _serialise(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode() + b"\n"


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
    if document.get("version") not in READABLE_VERSIONS:
        raise _corrupt(
            path,
            f"format version {document.get('version')!r} is not one this flurry reads "
            f"({', '.join(map(str, READABLE_VERSIONS))}; was it written by a newer flurry?)",
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
            and _sealed_has_valid_shape(sealed)
            and _recovery_has_valid_shape(document)
            and _has_valid_rotations(document.get("rotations", []))
        )
    except (KeyError, TypeError, ValueError):  # ValueError covers bad base64 and InvalidDID
        return False


def _sealed_has_valid_shape(sealed: dict[str, Any]) -> bool:
    return set(sealed) == set(_SEALED_NAMES) and all(
        len(_unb64(sealed[name]["nonce"])) == NONCE_LENGTH
        and len(_unb64(sealed[name]["ciphertext"])) == KEY_LENGTH + TAG_LENGTH
        for name in _SEALED_NAMES
    )


def _recovery_has_valid_shape(document: dict[str, Any]) -> bool:
    """Version 1 has no recovery section; version 2 always names one, null when there is no code."""
    if document["version"] == 1:
        return "recovery" not in document
    recovery = document["recovery"]
    if recovery is None:
        return True
    return (
        set(recovery) == {"kdf", "created", "sealed"}
        and recovery["kdf"] == RECOVERY_KDF
        and isinstance(recovery["created"], str)
        and _sealed_has_valid_shape(recovery["sealed"])
    )


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


def _normalise(passphrase: str) -> str:
    # NFC so that the same passphrase typed on another keyboard or OS gives the same bytes.
    return unicodedata.normalize("NFC", passphrase)


def _derive_kek(passphrase: str, kdf: dict[str, Any]) -> bytes:
    secret = _normalise(passphrase).encode("utf-8")
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
