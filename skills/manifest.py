"""A skill's manifest: who made it, what it may touch, which tools it offers.

The manifest is the one thing the owner reviews at install, so every field is checked here
and every error says which field is wrong and how to fix it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import jsonschema
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.did_key import (
    InvalidDID,
    ed25519_public_from_did_key,
    verification_method_id,
)
from identity.jws import JWSRejected, sign_json, verify_json
from skills.errors import SkillError


class ManifestError(SkillError, ValueError):
    """The manifest is malformed; the message names the field."""


NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_TAG = r"[a-z0-9][a-z0-9_-]*"
_HOST = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
_PORT = r"[1-9][0-9]{0,4}"

# The whole vocabulary. Narrow on purpose: a permission names one capability the node
# brokers, and a qualifier (tags, host) narrows it further. Anything else is refused, so a
# manifest cannot ask for something the owner has no way to understand.
PERMISSIONS = {
    "vault.read": re.compile(rf"^vault\.read(?::tags={_TAG}(?:,{_TAG})*)?$"),
    "notes.write": re.compile(r"^notes\.write$"),
    "peers.send": re.compile(r"^peers\.send$"),
    # https on the default port, or the port named; anything else is an origin, named whole.
    "http": re.compile(rf"^http:host={_HOST}(?::{_PORT})?$"),
    "http.origin": re.compile(rf"^http:origin=https?://{_HOST}(?::{_PORT})?$"),
    "nostr.publish": re.compile(r"^nostr\.publish$"),
    "owner.ask": re.compile(r"^owner\.ask$"),
}


def check_permission(text: str) -> str:
    """``text`` if it is in the vocabulary, else ManifestError naming what is understood."""
    if isinstance(text, str) and any(p.match(text) for p in PERMISSIONS.values()):
        return text
    raise ManifestError(
        f"unknown permission {text!r}; understood: vault.read[:tags=a,b], notes.write, peers.send, "
        "http:host=<domain>[:port] (https), http:origin=http(s)://<host>[:port], nostr.publish, owner.ask"
    )


# What a manifest may ask of skills.sandbox.Limits (the owner's caps still bound it).
LIMIT_NAMES = ("memory_mb", "processes", "cpu_seconds", "file_mb", "open_files")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    description: str
    permissions: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    author_did: str | None = None
    # A detached JWS (identity.jws) by author_did over the rest of the manifest; checked here,
    # so a Manifest that exists with a signature is one its author really signed.
    signature: dict | None = None
    # Resource limits the skill asks for, e.g. {"memory_mb": 2048}; None: the node's defaults.
    limits: dict | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise ManifestError(
                f"name {self.name!r}: use a lowercase slug (a-z, 0-9, '-'), starting with a letter"
            )
        if not isinstance(self.version, str) or not self.version.strip():
            raise ManifestError(f"{self.name}: version must be a non-empty string such as '0.1.0'")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ManifestError(f"{self.name}: description must say what the skill does")
        if self.author_did is not None:
            try:
                ed25519_public_from_did_key(self.author_did)
            except InvalidDID as e:
                raise ManifestError(f"{self.name}: author_did: {e}") from None
        if self.signature is not None:
            self._check_signature(self.signature)
        for p in self.permissions:
            check_permission(p)
        if len(set(self.permissions)) != len(self.permissions):
            raise ManifestError(f"{self.name}: a permission is listed twice")
        seen = set()
        for tool in self.tools:
            _check_tool(self.name, tool)
            if tool.name in seen:
                raise ManifestError(f"{self.name}: tool {tool.name!r} is listed twice")
            seen.add(tool.name)
        if not self.tools:
            raise ManifestError(f"{self.name}: a skill must offer at least one tool")
        if self.limits is not None:
            if not isinstance(self.limits, dict) or set(self.limits) - set(LIMIT_NAMES):
                raise ManifestError(
                    f"{self.name}: limits must be a mapping of {', '.join(LIMIT_NAMES)}"
                )
            for key, value in self.limits.items():
                if type(value) is not int or value < 1:
                    raise ManifestError(f"{self.name}: limits.{key} must be a whole number above 0")

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"a manifest must be a mapping, got {type(data).__name__}")
        known = {
            "name",
            "version",
            "description",
            "permissions",
            "tools",
            "author_did",
            "signature",
            "limits",
        }
        if unknown := set(data) - known:
            raise ManifestError(f"unknown manifest fields: {', '.join(sorted(unknown))}")
        missing = {"name", "version", "description", "tools"} - set(data)
        if missing:
            raise ManifestError(f"manifest is missing: {', '.join(sorted(missing))}")
        perms, tools = data.get("permissions", []), data["tools"]
        if not isinstance(perms, list | tuple):
            raise ManifestError("permissions must be a list of strings")
        if not isinstance(tools, list | tuple) or not all(isinstance(t, dict) for t in tools):
            raise ManifestError("tools must be a list of {name, description, parameters}")
        specs = []
        for t in tools:
            if set(t) - {"name", "description", "parameters"} or not {"name", "description"} <= set(
                t
            ):
                raise ManifestError(
                    f"tool {t.get('name')!r}: needs exactly name, description and parameters"
                )
            specs.append(
                ToolSpec(
                    t["name"],
                    t["description"],
                    t.get("parameters", {"type": "object", "properties": {}}),
                )
            )
        return cls(
            name=data["name"],
            version=data["version"],
            description=data["description"],
            permissions=tuple(perms),
            tools=tuple(specs),
            author_did=data.get("author_did"),
            signature=data.get("signature"),
            limits=data.get("limits"),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["permissions"] = list(self.permissions)
        d["tools"] = [asdict(t) for t in self.tools]
        if d["limits"] is None:
            del d["limits"]  # so manifests signed before limits existed still verify
        return d

    def signed_part(self) -> dict:
        """What the author signs: the manifest as a dict, without its signature."""
        d = self.to_dict()
        del d["signature"]
        return d

    def _check_signature(self, signature: dict) -> None:
        if self.author_did is None:
            raise ManifestError(f"{self.name}: a signature needs an author_did to check it against")
        try:
            signer = verify_json(self.signed_part(), signature)
        except JWSRejected as e:
            raise ManifestError(f"{self.name}: signature: {e}") from None
        if signer != self.author_did.partition("#")[0]:
            raise ManifestError(
                f"{self.name}: signed by {signer}, not by the author {self.author_did}"
            )

    def tool(self, name: str) -> ToolSpec:
        for t in self.tools:
            if t.name == name:
                return t
        raise KeyError(name)


def _check_tool(skill: str, tool: ToolSpec) -> None:
    if not isinstance(tool.name, str) or not TOOL_NAME.match(tool.name):
        raise ManifestError(f"{skill}: tool name {tool.name!r}: letters, digits, '_' and '-' only")
    if not isinstance(tool.description, str) or not tool.description.strip():
        raise ManifestError(f"{skill}: tool {tool.name!r} needs a description (the model reads it)")
    schema = tool.parameters
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ManifestError(
            f"{skill}: tool {tool.name!r}: parameters must be a JSON Schema with type 'object'"
        )
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ManifestError(
            f"{skill}: tool {tool.name!r}: parameters is not a valid JSON Schema: {e.message}"
        ) from None


def sign_manifest(manifest: Manifest | dict, key: Ed25519PrivateKey, author_did: str) -> Manifest:
    """The manifest with author_did set and signed by ``key`` (a skill author's release step)."""
    data = manifest.to_dict() if isinstance(manifest, Manifest) else dict(manifest)
    data.update(author_did=author_did, signature=None)
    unsigned = Manifest.from_dict(data)
    signature = sign_json(unsigned.signed_part(), key, verification_method_id(author_did))
    return Manifest.from_dict({**unsigned.to_dict(), "signature": signature})
