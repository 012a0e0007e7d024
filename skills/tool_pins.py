"""Pinned tools: what the owner approved of a skill's tools, and what changed since.

A tool is what the model reads (its name and description) and what decides which arguments it
accepts (its input schema). A "rug pull" changes exactly these after the owner approved them:
an MCP server that describes ``read_file`` honestly at install and later tells the model to
send the file somewhere. So at approval the node pins each tool by ``skills.release.tool_hash``
and keeps the full spec it pinned (to show the difference later); whenever the skill's process
lists its tools (each time it starts), the listing is compared with the pins:

- a tool whose hash is its pin keeps working;
- a tool whose name is pinned but whose description or schema differs, and a tool not pinned
  at all, is *pending*: disabled (not offered to the model; a call to it is refused, naming
  ``flurry skills review``) until the owner accepts the new version, which becomes its pin;
- a pinned tool the listing lacks is simply not there.

Everything a listing holds comes from a process the owner does not control (an unmanaged MCP
server runs with nobody's confinement), so it is bounded before it is kept: at most
``MAX_TOOLS`` tools, names, descriptions and schemas of bounded size. A tool over the bounds is
disabled and cannot be accepted. What is shown to the owner has its control characters escaped,
so a description cannot hide part of itself from the terminal.

This module is plain data in, plain data out; ``skills.registry`` keeps the state in the
skill's vault record (``pinned_tools``, ``pinned_specs``, ``pending_tools``).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skills.errors import SkillError
from skills.release import tool_hash

MAX_TOOLS = 128
MAX_NAME_CHARS = 128
MAX_DESCRIPTION_CHARS = 8192
MAX_SCHEMA_BYTES = 32 * 1024
REVIEW_COMMAND = "flurry skills review"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")

Spec = dict[str, Any]  # {"name", "description", "input_schema"}


class ToolDisabled(SkillError):
    """A call to a tool that changed (or appeared) since the owner approved the skill."""


class ToolListRefused(SkillError):
    """A tool listing over the bounds, where nothing may be kept of it (at install)."""


def spec(name: Any, description: Any, input_schema: Any) -> Spec:
    """A tool as it is pinned and shown; ``description`` None (MCP allows it) is ""."""
    return {
        "name": name,
        "description": "" if description is None else description,
        "input_schema": input_schema,
    }


def spec_hash(tool: Spec) -> str:
    return tool_hash(tool["name"], tool["description"], tool["input_schema"])


def too_large(tool: Spec) -> str | None:
    """Why ``tool`` may not be pinned (over a bound, or not text and a JSON object), or None."""
    name, description, schema = tool["name"], tool["description"], tool["input_schema"]
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        return f"its name must be text of 1 to {MAX_NAME_CHARS} characters"
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        return f"its description must be text of at most {MAX_DESCRIPTION_CHARS} characters"
    if not isinstance(schema, dict):
        return "its input schema must be a JSON object"
    try:
        size = len(json.dumps(schema, ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError):
        return "its input schema is not JSON"
    if size > MAX_SCHEMA_BYTES:
        return f"its input schema is {size} bytes, over {MAX_SCHEMA_BYTES}"
    return None


def checked_listing(tools: Iterable[Spec], where: str) -> tuple[Spec, ...]:
    """``tools`` if every one may be pinned; ToolListRefused naming the first that may not."""
    listed = tuple(tools)
    if len(listed) > MAX_TOOLS:
        raise ToolListRefused(f"{where} lists {len(listed)} tools; at most {MAX_TOOLS} are kept")
    for tool in listed:
        if why := too_large(tool):
            raise ToolListRefused(f"{where}: tool {shown(str(tool['name'])[:80])!r}: {why}")
    return listed


@dataclass(frozen=True)
class Pins:
    """A skill's pins: tool name → hash and the spec pinned, and the tools waiting for review
    (name → the spec as last listed; {"name", "refused": why} for one that may not be pinned)."""

    hashes: Mapping[str, str] = field(default_factory=dict)
    specs: Mapping[str, Spec] = field(default_factory=dict)
    pending: Mapping[str, Spec] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[Spec]) -> Pins:
        """Every tool of ``tools`` pinned as it is: what the owner approved."""
        specs = {t["name"]: dict(t) for t in tools}
        return cls({n: spec_hash(s) for n, s in specs.items()}, specs, {})

    def check(self, listed: Iterable[Spec]) -> Pins:
        """The pins with ``pending`` as the listing makes it: each listed tool that is not its
        pin (changed, new, or over the bounds). A tool listed as pinned leaves pending; one not
        listed any more is just gone (its pin stays: back unchanged, it works again)."""
        pending: dict[str, Spec] = {}
        for i, tool in enumerate(listed):
            name = str(tool["name"])[:MAX_NAME_CHARS]
            if i >= MAX_TOOLS:
                pending[name] = {"name": name, "refused": f"over {MAX_TOOLS} tools listed"}
            elif why := too_large(tool):
                pending[name] = {"name": name, "refused": why}
            elif self.hashes.get(name) != spec_hash(tool):
                pending[name] = dict(tool)
            if len(pending) >= MAX_TOOLS:
                break  # the record stays bounded; the rest are disabled as unlisted-unpinned
        return Pins(self.hashes, self.specs, pending)

    @classmethod
    def first_use(cls, listed: Iterable[Spec]) -> Pins:
        """For a skill approved before pins existed whose record holds no tools: what it
        lists the first time it starts (within the bounds) is pinned."""
        return cls.of([t for t in list(listed)[:MAX_TOOLS] if too_large(t) is None])

    def disabled(self, skill: str, listed: Iterable[Spec]) -> dict[str, str]:
        """Each listed tool that may not run → what a call to it is told."""
        return {
            str(t["name"]): self.refusal(skill, str(t["name"]))
            if t["name"] in self.pending
            else f"tool {str(t['name'])!r} of {skill} is disabled: over {MAX_TOOLS} tools listed"
            for t in listed
            if not self.allows(t)
        }

    def allows(self, tool: Spec) -> bool:
        """Whether ``tool`` as listed is the version the owner approved."""
        return too_large(tool) is None and self.hashes.get(tool["name"]) == spec_hash(tool)

    def accept(self, names: Iterable[str] | None) -> Pins:
        """The pending versions of ``names`` (None: all of them) pinned, as the owner accepted."""
        chosen = list(self.pending) if names is None else list(dict.fromkeys(names))
        for name in chosen:
            if name not in self.pending:
                waiting = ", ".join(sorted(self.pending)) or "none"
                raise SkillError(f"tool {name!r} is not waiting for review (waiting: {waiting})")
            if "refused" in self.pending[name]:
                raise SkillError(
                    f"tool {name!r} cannot be accepted: {self.pending[name]['refused']}"
                )
        hashes, specs = dict(self.hashes), dict(self.specs)
        for name in chosen:
            specs[name] = dict(self.pending[name])
            hashes[name] = spec_hash(specs[name])
        pending = {n: s for n, s in self.pending.items() if n not in chosen}
        return Pins(hashes, specs, pending)

    def offered(self) -> list[Spec]:
        """The approved versions of the tools not waiting for review."""
        return [s for n, s in self.specs.items() if n not in self.pending]

    def refusal(self, skill: str, tool: str) -> str:
        """What a call to a pending tool is told."""
        waiting = self.pending[tool]
        if "refused" in waiting:
            return f"tool {tool!r} of {skill} is disabled: {waiting['refused']}"
        if tool not in self.specs:
            what = "is new since you approved it"
        else:
            what = f"changed since you approved it ({' and '.join(changes(self.specs[tool], waiting))})"
        return (
            f"tool {tool!r} of {skill} {what}; it is disabled until you review it: "
            f"{REVIEW_COMMAND} {skill}"
        )

    def to_record(self) -> dict:
        return {
            "pinned_tools": dict(self.hashes),
            "pinned_specs": {n: dict(s) for n, s in self.specs.items()},
            "pending_tools": {n: dict(s) for n, s in self.pending.items()},
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Pins | None:
        """The pins kept in a skill's record; None for a record written before pins existed."""
        if record.get("pinned_tools") is None:
            return None
        return cls(
            dict(record["pinned_tools"]),
            dict(record.get("pinned_specs") or {}),
            dict(record.get("pending_tools") or {}),
        )


def changes(old: Spec | None, new: Spec) -> list[str]:
    """Which parts differ: "description", "input schema"."""
    if old is None:
        return ["new tool"]
    found = []
    if old.get("description") != new.get("description"):
        found.append("description")
    if old.get("input_schema") != new.get("input_schema"):
        found.append("input schema")
    return found


def shown(text: str) -> str:
    """``text`` with control and direction-changing characters escaped, for a terminal."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _lines(text: str) -> list[str]:
    return [shown(line) for line in text.splitlines()] or [""]


def _schema_lines(schema: Any) -> list[str]:
    return _lines(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False))


def diff(old: Spec | None, new: Spec) -> list[str]:
    """A readable difference of one tool, line by line: each changed part as a unified diff
    (approved → now listed); a new tool, or one refused, is shown whole."""
    if "refused" in new:
        return [f"refused: {new['refused']}"]
    if old is None:
        return [
            "description:",
            *(f"  + {line}" for line in _lines(new["description"])),
            "input schema:",
            *(f"  + {line}" for line in _schema_lines(new["input_schema"])),
        ]
    out: list[str] = []
    for part, before, after in (
        ("description", _lines(old["description"]), _lines(new["description"])),
        (
            "input schema",
            _schema_lines(old["input_schema"]),
            _schema_lines(new["input_schema"]),
        ),
    ):
        if before == after:
            continue
        out.append(f"{part}:")
        unified = difflib.unified_diff(before, after, "approved", "now listed", n=2, lineterm="")
        out += [f"  {line}" for line in unified]
    return out


def text(tool: Spec | None) -> str | None:
    """A tool as the owner reads it: its description, then its input schema, escaped."""
    if tool is None or "refused" in tool:
        return None
    return "\n".join(
        ["description:", *(f"  {line}" for line in _lines(tool["description"]))]
        + ["input schema:", *(f"  {line}" for line in _schema_lines(tool["input_schema"]))]
    )


def review(pins: Pins | None) -> list[dict]:
    """Each tool waiting for review, for the owner: {name, change ("changed", "new" or
    "refused"), parts, old, new (specs, None where there is none), old_text, new_text (the
    same, readable and escaped), diff (lines)}."""
    if pins is None:
        return []
    found = []
    for name, new in sorted(pins.pending.items()):
        old = pins.specs.get(name)
        refused = "refused" in new
        found.append(
            {
                "name": name,
                "change": "refused" if refused else "new" if old is None else "changed",
                "parts": [] if refused else changes(old, new),
                "old": old,
                "new": None if refused else new,
                "old_text": text(old),
                "new_text": text(new),
                "diff": diff(old, new),
            }
        )
    return found
