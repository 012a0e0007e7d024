"""Bearer tokens for the owner's local apps (the OpenAI-compatible endpoint).

Owns making, checking, listing and revoking them. Each lives in the vault as one small sealed
record, found by an HMAC of its key, so neither token names nor tokens reach the disk in the
clear:

- ``token``  key = hash  → {hash, name, allow, created_at, peer}   (the token itself is never stored)

A token bound to a ``peer`` DID (``flurry tokens create NAME --allow infer --peer DID``) acts
as that peer: its requests are metered against the peer's ``infer`` grant (node.infer), for a
peer's app that cannot sign.

What a token allows is a set of ``agent.grants`` operation names. Token-name uniqueness is a
read-modify-write guarded by an in-process lock: keep one ``Tokens`` per vault.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from agent.errors import AgentError
from agent.grants import EVERY_OPERATION, INFER, check_operation
from store.records import Records

TOKEN_PREFIX = "flurry_"
_TOKEN_BYTES = 32
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class TokenError(AgentError):
    """A token could not be created, found or used; the message says why."""


class InvalidToken(TokenError):
    """The bearer token is malformed, unknown or revoked (HTTP 401)."""


class TokenNameTaken(TokenError):
    """A token with this name exists already."""


@dataclass(frozen=True)
class TokenGrant:
    name: str
    allow: frozenset[str]
    created_at: float
    peer: str | None = (
        None  # a peer's DID this token acts as (its grant decides), or the owner's app
    )

    def allows(self, operation: str) -> bool:
        return EVERY_OPERATION in self.allow or operation in self.allow


def _token_hash(token: str) -> str:
    # A plain hash is enough: a token is 256 random bits, so there is no guess to test, and the
    # vault then keys its lookup tag with its MAC key anyway. The prefix keeps this hash apart
    # from any other SHA-256 of the same bytes.
    return hashlib.sha256(b"flurry bearer token\x00" + token.encode()).hexdigest()


class Tokens:
    """Bearer tokens for the owner's local apps (the OpenAI-compatible endpoint).

    One record per token, keyed by the token's hash and holding its name: create and revoke
    are then each one vault write, so a crash cannot leave a token that works but is not
    listed. Revoking by name scans the records, which is fine for the handful of apps an
    owner connects.
    """

    def __init__(self, records: Records) -> None:
        self._records = records
        self._lock = threading.Lock()

    def create(self, name: str, allow: set[str], peer: str | None = None) -> str:
        """A new token for ``name``; returned once only, since the vault keeps only its hash."""
        if not _TOKEN_NAME.match(name):
            raise TokenError(
                f"token name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        allow_set = frozenset(check_operation(op) for op in allow)
        if peer is not None and (not isinstance(peer, str) or not peer.startswith("did:")):
            raise TokenError(f"a token is bound to a peer's DID ('did:key:z6Mk…'), not {peer!r}")
        if peer is not None and allow_set != {INFER}:
            raise TokenError(
                "a token bound to a peer can only 'infer' (use --allow infer): "
                "what else the peer may do, it asks for signed"
            )
        token = (
            TOKEN_PREFIX
            + base64.urlsafe_b64encode(secrets.token_bytes(_TOKEN_BYTES)).rstrip(b"=").decode()
        )
        digest = _token_hash(token)
        with self._lock:
            if any(value["name"] == name for _, value in self._records.records("token")):
                raise TokenNameTaken(
                    f"a token named {name!r} exists; revoke it first or choose another name"
                )
            self._records.put_record(
                "token",
                digest,
                {
                    "hash": digest,
                    "name": name,
                    "allow": sorted(allow_set),
                    "created_at": time.time(),
                    "peer": peer,
                },
            )
        return token

    def verify(self, token: str) -> TokenGrant:
        """What ``token`` may do; raises InvalidToken."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise InvalidToken("not a flurry token (they start with 'flurry_')")
        digest = _token_hash(token)
        with self._lock:
            record = self._records.get_record("token", digest)
        # The lookup above matched on an HMAC of the hash, which tells a timing observer nothing
        # about the token; the comparison here is constant-time all the same.
        if record is None or not hmac.compare_digest(record["hash"], digest):
            raise InvalidToken("unknown or revoked token; create a new one for this app")
        return TokenGrant(
            record["name"], frozenset(record["allow"]), record["created_at"], record.get("peer")
        )

    def list(self) -> list[TokenGrant]:
        """Every token's name and permissions (never the token: it is not kept)."""
        with self._lock:
            records = self._records.records("token")
        return [
            TokenGrant(v["name"], frozenset(v["allow"]), v["created_at"], v.get("peer"))
            for _, v in records
        ]

    def revoke(self, name: str) -> bool:
        """Make the token called ``name`` stop working; False if there is none."""
        with self._lock:
            for key, value in self._records.records("token"):
                if value["name"] == name:
                    return self._records.delete_record("token", key)
        return False
