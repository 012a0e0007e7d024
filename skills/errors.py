"""The root of the skill framework's errors (manifests, installs, skill processes, the broker)."""


class SkillError(Exception):
    """A skill could not be installed, started or called; the message says why."""
