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

The node never imports this code: ``python -m skills.runner word_count_skill:skill`` does, in
its own process, and serves the tools over MCP on stdio.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skills.manifest import Manifest, ManifestError

ENTRY_POINT_GROUP = "flurry.skills"


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
        raise ManifestError(f"entry point {spec!r} returned {type(skill).__name__}, not skills.sdk.Skill")
    return skill
