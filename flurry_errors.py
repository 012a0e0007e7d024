"""The root of every error flurry raises on purpose.

Each part has its own root under this one (``identity.errors.IdentityError``,
``store.errors.StoreError``, ``agent.errors.AgentError``, ``skills.errors.SkillsError``,
``node.errors.NodeError``), and ``str(error)`` is the message a user reads: the command line
prints it as one line, the API as a problem's detail. Anything else that escapes is a bug.

Why a module of its own, beside the fixed folders rather than in one of them: `identity` and
`store` import no other part, yet both need this root. Put in either, the other would import
it; a new package would break the fixed layout. One module with one class and no imports is
the least bad place: below every layer, holding no logic a part could come to depend on.
"""


class FlurryError(Exception):
    """A failure a user can act on; the message says what went wrong and, where it can, what to do."""
