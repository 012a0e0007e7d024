"""The root of the agent's errors (models, grants, the audit log, approvals, the queue)."""


class AgentError(Exception):
    """The model, a grant, the audit log or the queue refused or failed; the message says why."""


class ModelError(AgentError):
    """A model could not be fetched, verified or found; the message says what to do."""
