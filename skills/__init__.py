"""Skills installed like apps.

- ``sdk``: the contract for skill authors (a ``Skill``: manifest + one function per tool,
  named by an entry point in group ``flurry.skills``).
- ``manifest``: the manifest and its narrow permission vocabulary.
- ``boot``: starts a skill's process isolated (``python -I -S skills/boot.py``): nothing of the
  skill's is importable until the runner has confined itself, and of the node's own code only
  the SDK, the runner and the built-in skills ever are (``boot.RUNNER_MODULES``).
- ``runner``: serves a skill over MCP on stdio; also reads its manifest and builds a project
  folder, always confined.
- ``sandbox``: confines the runner before the skill is imported (Landlock; user, network, mount
  and PID namespaces) and limits it (rlimits; a pids cgroup where one is writable).
- ``host``: ``SkillProcess``, one skill in its own process, called from sync code.
- ``registry``: ``Skills``, install → review → approve → start, kept as sealed vault records.
"""
