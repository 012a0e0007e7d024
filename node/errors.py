"""The node's errors: its home, the owner's requests, peers and Nostr; and the roots of every
part's, which the command line and the API translate.

Each part has its own root (``identity.errors.IdentityError``, ``store.errors.StoreError``,
``agent.errors.AgentError``, ``skills.errors.SkillError``, ``NodeError``), and ``str(error)`` is
the message a user reads. There is no one root above them: ``identity`` and ``store`` import no
other part, and the fixed layout has no place for a module beside the folders; the node, which
sees every part, names them together here. Anything else that escapes is a bug.
"""

from agent.errors import AgentError
from identity.errors import IdentityError
from skills.errors import SkillError
from store.errors import StoreError


class NodeError(Exception):
    """The node's wiring, its home or one of its channels failed; the message says why."""


class OwnerError(NodeError):
    """The owner's request cannot be done; the message says why."""


class NotFound(OwnerError):
    """The skill, approval or other thing named does not exist."""


# Every error flurry raises on purpose: a failure the user can act on, not a bug.
PART_ERRORS: tuple[type[Exception], ...] = (
    IdentityError,
    StoreError,
    AgentError,
    SkillError,
    NodeError,
)
