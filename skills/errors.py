"""The root of the skill framework's errors (manifests, installs, skill processes, the broker)."""

from flurry_errors import FlurryError


class SkillError(FlurryError):
    """A skill could not be installed, started or called; the message says why."""
