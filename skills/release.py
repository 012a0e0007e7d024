"""A signed skill release: what one node publishes and another checks before installing.

A release is one JSON object (the *release manifest*)::

    {"type": "flurry.skill-release/1", "name": "weather", "version": "1.2.0",
     "description": "...", "author_did": "did:key:z6Mk...",
     "wheel": {"filename": "weather-1.2.0-py3-none-any.whl", "sha256": "<hex>", "size": 1234},
     "tools": {"forecast": "<hex>", ...}, "permissions": ["http:host=api.example.org"],
     "signatures": [<JWS by the author>, <JWS by a reviewer>, ...]}

Every signature is a detached JWS (identity.jws: EdDSA, did:key kid) over the RFC 8785 form of
the object without its ``signatures`` member, so the author and any co-signing reviewers sign
the very same bytes: name, version, the wheel's hash and every tool's hash. The first signature
must be the author's; the others are co-signatures, each counted once per signer.

A tool's hash (``tool_hash``) is the sha256 of the canonical JSON of its name, description and
input schema: what the model reads and what decides which arguments a tool accepts. It is what
the node pins at approval (rug pulls change exactly these) and what a release promises.

Everything here is about bytes from a stranger: sizes are bounded before anything is parsed,
every field's type is checked before it is used, and ``check_release`` returns only releases
whose author really signed them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.did_key import InvalidDID, ed25519_public_from_did_key, verification_method_id
from identity.jws import JWSRejected, canonical_json, sign_json, verify_json
from skills.errors import SkillError
from skills.manifest import NAME, TOOL_NAME, Manifest, ManifestError, check_permission

RELEASE_TYPE = "flurry.skill-release/1"
MANIFEST_FILE = "manifest.json"
# A release manifest is a few kilobytes; the wheel is bounded by the pod's resource size.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_WHEEL_BYTES = 4 * 1024 * 1024
MAX_TOOLS = 64
MAX_SIGNATURES = 16
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.+!-]{1,200}\.whl$")
_FIELDS = {
    "type",
    "name",
    "version",
    "description",
    "author_did",
    "wheel",
    "tools",
    "permissions",
    "signatures",
}


class ReleaseRefused(SkillError):
    """A release that cannot be trusted or installed; the message says why."""


def tool_hash(name: str, description: str, input_schema: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a tool's name, description and input schema."""
    return hashlib.sha256(
        canonical_json({"name": name, "description": description, "input_schema": input_schema})
    ).hexdigest()


def tool_hashes(manifest: Manifest) -> dict[str, str]:
    """Each tool of a skill's manifest by name → its tool_hash."""
    return {t.name: tool_hash(t.name, t.description, t.parameters) for t in manifest.tools}


@dataclass(frozen=True)
class Release:
    """A release manifest whose author's signature held."""

    name: str
    version: str
    description: str
    author_did: str
    wheel_filename: str
    wheel_sha256: str
    wheel_size: int
    tools: Mapping[str, str]
    permissions: tuple[str, ...]
    cosigners: tuple[str, ...]  # reviewers' DIDs whose co-signature held, author excluded
    document: Mapping[str, Any]  # the release manifest as received, signatures included

    def check_wheel(self, wheel: bytes) -> None:
        """ReleaseRefused unless ``wheel`` is exactly the wheel this release names."""
        if len(wheel) != self.wheel_size:
            raise ReleaseRefused(
                f"{self.name} {self.version}: the wheel is {len(wheel)} bytes, "
                f"the release says {self.wheel_size}"
            )
        digest = hashlib.sha256(wheel).hexdigest()
        if digest != self.wheel_sha256:
            raise ReleaseRefused(
                f"{self.name} {self.version}: the wheel's sha256 is {digest}, "
                f"the release says {self.wheel_sha256}"
            )

    def check_manifest(self, manifest: Manifest) -> None:
        """ReleaseRefused unless the skill, as its own code lists itself, is what was signed.

        ``manifest`` is what the installed skill really reports (read by the confined runner):
        its name, version, permissions and every tool's hash must be the release's.
        """
        where = f"{self.name} {self.version}"
        if manifest.name != self.name:
            raise ReleaseRefused(f"{where}: the wheel holds skill {manifest.name!r}")
        if manifest.version != self.version:
            raise ReleaseRefused(f"{where}: the wheel holds version {manifest.version!r}")
        if set(manifest.permissions) != set(self.permissions):
            raise ReleaseRefused(
                f"{where}: the skill asks for {sorted(manifest.permissions)}, "
                f"the release for {sorted(self.permissions)}"
            )
        listed = tool_hashes(manifest)
        for name in sorted(set(listed) | set(self.tools)):
            if name not in self.tools:
                raise ReleaseRefused(f"{where}: tool {name!r} is not in the release")
            if name not in listed:
                raise ReleaseRefused(f"{where}: tool {name!r} of the release is not offered")
            if listed[name] != self.tools[name]:
                raise ReleaseRefused(
                    f"{where}: tool {name!r} differs from the release "
                    "(its name, description or input schema changed)"
                )


def make_release(
    manifest: Manifest,
    wheel_filename: str,
    wheel: bytes,
    key: Ed25519PrivateKey,
    author_did: str,
) -> dict[str, Any]:
    """The signed release manifest of a built skill wheel (the publisher's side)."""
    if len(wheel) > MAX_WHEEL_BYTES:
        raise ReleaseRefused(
            f"{manifest.name}: the wheel is {len(wheel)} bytes; a release holds at most "
            f"{MAX_WHEEL_BYTES} (the pod's resource limit)"
        )
    document: dict[str, Any] = {
        "type": RELEASE_TYPE,
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "author_did": author_did,
        "wheel": {
            "filename": wheel_filename,
            "sha256": hashlib.sha256(wheel).hexdigest(),
            "size": len(wheel),
        },
        "tools": tool_hashes(manifest),
        "permissions": sorted(manifest.permissions),
    }
    document["signatures"] = [sign_json(document, key, verification_method_id(author_did))]
    check_release(document)  # what we publish must pass the check every installer makes
    return document


def cosign(document: Mapping[str, Any], key: Ed25519PrivateKey, reviewer_did: str) -> dict:
    """``document`` with a reviewer's co-signature added (checked first: never sign a forgery)."""
    release = check_release(document)
    if reviewer_did == release.author_did or reviewer_did in release.cosigners:
        raise ReleaseRefused(f"{release.name} {release.version}: {reviewer_did} signed it already")
    signed = dict(document)
    signature = sign_json(signed, key, verification_method_id(reviewer_did))
    signed["signatures"] = [*document["signatures"], signature]
    return signed


def parse_release(raw: bytes) -> Release:
    """A release manifest read from bytes (a download): size first, then JSON, then checks."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ReleaseRefused(
            f"a release manifest is at most {MAX_MANIFEST_BYTES} bytes, this one is {len(raw)}"
        )
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ReleaseRefused(f"the release manifest is not JSON: {e}") from None
    return check_release(document)


def check_release(document: object) -> Release:
    """The release if ``document`` is well formed and signed by its author; ReleaseRefused if not."""
    if not isinstance(document, Mapping):
        raise ReleaseRefused("a release manifest must be a JSON object")
    if unknown := set(document) - _FIELDS:
        raise ReleaseRefused(f"unknown release fields: {', '.join(sorted(map(str, unknown)))}")
    if missing := _FIELDS - set(document):
        raise ReleaseRefused(f"the release manifest is missing: {', '.join(sorted(missing))}")
    if document["type"] != RELEASE_TYPE:
        raise ReleaseRefused(f"type must be {RELEASE_TYPE!r}, not {document['type']!r}")
    name, version = document["name"], document["version"]
    if not isinstance(name, str) or not NAME.match(name):
        raise ReleaseRefused(f"name {name!r} is not a skill name")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ReleaseRefused(f"{name}: version {version!r} is not a version")
    where = f"{name} {version}"
    if not isinstance(document["description"], str) or len(document["description"]) > 4096:
        raise ReleaseRefused(f"{where}: description must be text of at most 4096 characters")
    author = document["author_did"]
    try:
        if not isinstance(author, str) or "#" in author:
            raise InvalidDID("a bare did:key DID")
        ed25519_public_from_did_key(author)
    except InvalidDID as e:
        raise ReleaseRefused(f"{where}: author_did {author!r}: {e}") from None
    wheel = document["wheel"]
    if (
        not isinstance(wheel, Mapping)
        or set(wheel) != {"filename", "sha256", "size"}
        or not isinstance(wheel["filename"], str)
        or not _WHEEL_NAME.match(wheel["filename"])
        or not isinstance(wheel["sha256"], str)
        or not _SHA256.match(wheel["sha256"])
        or type(wheel["size"]) is not int
        or not 0 < wheel["size"] <= MAX_WHEEL_BYTES
    ):
        raise ReleaseRefused(
            f"{where}: wheel must be {{filename: '*.whl', sha256: 64 hex, size: 1..{MAX_WHEEL_BYTES}}}"
        )
    tools = document["tools"]
    if (
        not isinstance(tools, Mapping)
        or not 0 < len(tools) <= MAX_TOOLS
        or not all(isinstance(t, str) and TOOL_NAME.match(t) for t in tools)
        or not all(isinstance(h, str) and _SHA256.match(h) for h in tools.values())
    ):
        raise ReleaseRefused(f"{where}: tools must map 1..{MAX_TOOLS} tool names to sha256 hex")
    permissions = document["permissions"]
    if not isinstance(permissions, list) or len(set(map(str, permissions))) != len(permissions):
        raise ReleaseRefused(f"{where}: permissions must be a list without repeats")
    try:
        for p in permissions:
            check_permission(p)
    except ManifestError as e:
        raise ReleaseRefused(f"{where}: {e}") from None
    signatures = document["signatures"]
    if not isinstance(signatures, list) or not 0 < len(signatures) <= MAX_SIGNATURES:
        raise ReleaseRefused(f"{where}: unsigned (signatures must hold 1..{MAX_SIGNATURES} JWS)")
    payload = {k: v for k, v in document.items() if k != "signatures"}
    signers = [_signer(payload, s, where) for s in signatures]
    if signers[0] != author:
        raise ReleaseRefused(f"{where}: signed by {signers[0]}, not by its author {author}")
    return Release(
        name=name,
        version=version,
        description=document["description"],
        author_did=author,
        wheel_filename=wheel["filename"],
        wheel_sha256=wheel["sha256"],
        wheel_size=wheel["size"],
        tools=dict(tools),
        permissions=tuple(permissions),
        cosigners=_unique(s for s in signers[1:] if s != author),
        document=dict(document),
    )


def _signer(payload: dict[str, Any], signature: object, where: str) -> str:
    if not isinstance(signature, dict):
        raise ReleaseRefused(f"{where}: a signature must be a JWS object")
    try:
        return verify_json(payload, signature)
    except JWSRejected as e:
        raise ReleaseRefused(f"{where}: signature refused: {e}") from None


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
