"""Envelope encryption for everything the owner gives the node.

The keyring (``identity.keyring``) unwraps one random 32-byte *data key*. From it we derive,
with HKDF, a sealing key (AES-256-GCM) and a MAC key (HMAC-SHA256). Every sealed value
carries associated data naming what it is (record kind, record id, field), so a ciphertext
copied into another row or field fails to open instead of being read as something else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from store.errors import StoreError

# One byte of format version in front of every sealed value, so the format can change later.
_VERSION = b"\x01"
_NONCE_BYTES = 12
# What sealing adds to a value: the version byte, the nonce and AES-GCM's 16-byte tag.
SEAL_OVERHEAD = 1 + _NONCE_BYTES + 16


class SealError(StoreError):
    """A sealed value could not be opened: wrong key, tampered bytes, or moved to another place."""


def _derive(data_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"flurry " + purpose).derive(
        data_key
    )


class Sealer:
    """Seals and opens values under the node's data key."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"seal v1"))
        self._mac_key = _derive(data_key, b"mac v1")

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad.encode())

    def seal_into(self, plaintext: bytes | memoryview, aad: str, out: memoryview) -> int:
        """Seal into the front of ``out`` rather than a new bytes object; returns the bytes
        written (``len(plaintext) + SEAL_OVERHEAD``). A backup seals tens of thousands of chunks
        straight into one pack buffer this way, without a copy of each."""
        size = len(plaintext) + SEAL_OVERHEAD
        nonce = os.urandom(_NONCE_BYTES)
        out[0] = _VERSION[0]
        out[1 : 1 + _NONCE_BYTES] = nonce
        self._aead.encrypt_into(nonce, plaintext, aad.encode(), out[1 + _NONCE_BYTES : size])
        return size

    def unseal(self, sealed: bytes | memoryview, aad: str) -> bytes:
        """Open a sealed value. A memoryview (of a mapped file) is opened without a copy of it:
        for the index snapshot, hundreds of megabytes."""
        if len(sealed) < SEAL_OVERHEAD or sealed[0] != _VERSION[0]:
            raise SealError(f"not a sealed value ({aad})")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, aad.encode())
        except InvalidTag:
            raise SealError(
                f"sealed value does not open ({aad}): wrong key, tampered, or moved"
            ) from None

    def mac(self, data: bytes, purpose: str) -> bytes:
        """A keyed hash: equal inputs give equal tags, but nobody without the key can test a guess."""
        return hmac.new(self._mac_key, purpose.encode() + b"\x00" + data, hashlib.sha256).digest()

    def write_file(self, path: Path, data: bytes, aad: str) -> None:
        """Seal ``data`` into ``path`` atomically: a crash leaves either the old file or the new one."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(self.seal(data, aad))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def read_file(self, path: Path, aad: str) -> bytes:
        return self.unseal(path.read_bytes(), aad)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
