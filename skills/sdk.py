"""The whole contract between flurry and a skill author.

A skill is a Python distribution that names, in entry point group ``flurry.skills``, a
callable returning a :class:`Skill`::

    # pyproject.toml
    [project.entry-points."flurry.skills"]
    word-count = "word_count_skill:skill"

    # word_count_skill.py
    from skills.sdk import Skill

    def word_count(text: str) -> int:
        return len(text.split())

    def skill() -> Skill:
        return Skill(
            manifest={"name": "word-count", "version": "0.1.0", "description": "Counts words.",
                      "tools": [{"name": "word_count", "description": "Words in a text.",
                                 "parameters": {"type": "object", "required": ["text"],
                                                "properties": {"text": {"type": "string"}}}}]},
            tools={"word_count": word_count},
        )

The node never imports this code: the runner does (``python -I -S skills/boot.py
word_count_skill:skill``), in its own process, once confined, and serves the tools over MCP
on stdio. Only this SDK (and the standard library, and what the skill installed beside itself)
is importable there; the node's own packages are not.

A tool reaches the node only through :data:`node`, and only as far as the owner granted::

    from skills.sdk import node
    node.search("plumber", k=3)          # needs vault.read (or vault.read:tags=…)
    node.write_note("Plumber", "Monday")   # needs notes.write
    node.ask_peer("alice", "free on Monday?")  # needs peers.send
    node.http("https://api.example.org/x")     # needs http:host=api.example.org
    node.ask_owner("Book the table for 8?")    # needs owner.ask; True if the owner says yes
    node.publish_nostr("Back on Monday")       # needs nostr.publish; a public note, signed by the node

Each raises :class:`CapabilityDenied` when the permission was not granted (or was revoked).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skills.broker import BrokerClient, CapabilityDenied, CapabilityFailed
from skills.manifest import Manifest, ManifestError

__all__ = [
    "ENTRY_POINT_GROUP",
    "CapabilityDenied",
    "CapabilityFailed",
    "Skill",
    "load_skill",
    "node",
]

ENTRY_POINT_GROUP = "flurry.skills"
ASK_OWNER_TIMEOUT = (
    330.0  # a little over the node's own five minutes, so the node's "no" arrives first
)


@dataclass(frozen=True)
class Skill:
    """A manifest and one Python function per tool it lists; a tool gets its arguments as keywords."""

    manifest: Manifest
    tools: dict[str, Callable[..., Any]]

    def __init__(self, manifest: Manifest | dict, tools: dict[str, Callable[..., Any]]) -> None:
        m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
        listed = {t.name for t in m.tools}
        if listed != set(tools):
            raise ManifestError(
                f"{m.name}: tools in the manifest {sorted(listed)} and functions given {sorted(tools)} differ"
            )
        object.__setattr__(self, "manifest", m)
        object.__setattr__(self, "tools", dict(tools))


def load_skill(spec: str) -> Skill:
    """Import ``module:attr`` (an entry point's value) and call it. Only ever run in a skill's process."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ManifestError(f"entry point {spec!r}: expected 'module:callable'")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    skill = target() if callable(target) and not isinstance(target, Skill) else target
    if not isinstance(skill, Skill):
        raise ManifestError(
            f"entry point {spec!r} returned {type(skill).__name__}, not skills.sdk.Skill"
        )
    return skill


class NodeAccess:
    """The node's capabilities as the owner granted them to this skill (see the module doc)."""

    def __init__(self) -> None:
        self._client: BrokerClient | None = None

    def connect(self, socket_path: str, token: str) -> None:
        """Called by the runner before the skill is imported; skills never call it."""
        self._client = BrokerClient(socket_path, token)

    def _call(self, capability: str, **arguments: Any) -> Any:
        if self._client is None:
            raise CapabilityFailed("not running under a flurry node: nothing to reach")
        return self._client.call(
            capability, arguments, timeout=ASK_OWNER_TIMEOUT if capability == "owner.ask" else 120.0
        )

    def search(self, query: str, k: int = 3, tags: list[str] | None = None) -> list[dict]:
        """The owner's passages closest to ``query``: [{path, chunk, score, snippet}, …],
        from documents with ``tags`` (which must be among those granted) or all granted."""
        return self._call(
            "vault.search", query=query, k=k, **({"tags": list(tags)} if tags else {})
        )

    def write_note(self, title: str, text: str) -> str:
        """Keep a note in the owner's vault (tagged "notes"); returns the path it is shown under."""
        return self._call("notes.write", title=title, text=text)["path"]

    def ask_peer(self, peer: str, text: str) -> str:
        """Ask a peer the owner pinned (by name, DID or URL); signed by the node, audited."""
        return self._call("peers.send", peer=peer, text=text)

    def http(self, url: str, method: str = "GET", body: str | None = None) -> dict:
        """An HTTP request made by the node for the skill: {status, content_type, body}."""
        return self._call("http.request", url=url, method=method, body=body)

    def ask_owner(self, question: str) -> bool:
        """Ask the owner a yes/no question (at their terminal, or as a pending approval in the
        TUI); False when they say no or do not answer within five minutes."""
        return self._call("owner.ask", question=question)

    def publish_nostr(self, text: str) -> dict:
        """Publish a public Nostr note signed by the node's key, on the owner's relays:
        {event_id, relays, failed}."""
        return self._call("nostr.publish", text=text)


node = NodeAccess()
