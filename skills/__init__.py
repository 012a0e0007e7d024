"""Skills installed like apps.

- ``sdk``: the contract for skill authors (a ``Skill``: manifest + one function per tool,
  named by an entry point in group ``flurry.skills``).
- ``manifest``: the manifest and its narrow permission vocabulary.
- ``runner``: ``python -m skills.runner module:callable`` serves a skill over MCP on stdio.
- ``sandbox``: confines the runner before the skill is imported (Landlock, namespaces).
- ``host``: ``SkillProcess``, one skill in its own process, called from sync code.
- ``registry``: ``Skills``, install → review → approve → start, kept as sealed vault records.
"""
