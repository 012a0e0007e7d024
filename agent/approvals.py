"""Tool calls waiting for the owner's yes or no.

When the policy says "ask" and the owner is not at the terminal that asked (a request over
the API, the TUI), the call waits here until the owner decides through the owner API. The
waiting side blocks on its own thread, never on the model queue: a call that waits five
minutes for the owner must not stop anyone else's question. Unanswered calls are refused.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.errors import AgentError
from agent.tools import ToolCall

WAIT_SECONDS = 300.0


class UnknownApproval(AgentError, KeyError):
    """No pending call has that id (decided already, timed out, or never existed)."""


@dataclass
class Pending:
    id: str
    call: ToolCall
    skill: str
    requester: str
    created: float
    decided: threading.Event = field(default_factory=threading.Event)
    approved: bool = False

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "tool": self.call.tool,
            "skill": self.skill,
            "arguments": self.call.arguments,
            "requester": self.requester,
            "created": self.created,
        }


Record = Callable[
    [Pending, str], None
]  # (the call, "approve" | "deny" | "timeout" | "withdrawn") → audit it


class Approvals:
    def __init__(self, record: Record, wait_seconds: float = WAIT_SECONDS) -> None:
        self._record = record
        self._wait = wait_seconds
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()

    def open(self, call: ToolCall, skill: str, requester: str) -> Pending:
        pending = Pending(uuid.uuid4().hex, call, skill, requester, time.time())
        with self._lock:
            self._pending[pending.id] = pending
        return pending

    def wait(self, pending: Pending) -> bool:
        """Block until the owner decides; an unanswered call is refused (and recorded so)."""
        if not pending.decided.wait(self._wait):
            with self._lock:
                if self._pending.pop(pending.id, None) is not None:
                    self._record(pending, "timeout")
                    return False
        return pending.approved

    def pending(self) -> list[Pending]:
        with self._lock:
            return sorted(self._pending.values(), key=lambda p: p.created)

    def decide(self, approval_id: str, approve: bool) -> Pending:
        with self._lock:
            pending = self._pending.pop(approval_id, None)
        if pending is None:
            raise UnknownApproval(
                f"no tool call {approval_id!r} is waiting (decided, timed out, or unknown)"
            )
        # Recorded before the waiting side learns it: a decision the log can't hold is not taken.
        try:
            self._record(pending, "approve" if approve else "deny")
        except Exception:
            with self._lock:
                self._pending[pending.id] = pending
            raise
        pending.approved = approve
        pending.decided.set()
        return pending

    def withdraw(self, pending: Pending) -> None:
        """The asker went away (the client hung up): nobody is waiting for a decision any more."""
        with self._lock:
            if self._pending.pop(pending.id, None) is None:
                return
        self._record(pending, "withdrawn")
        pending.decided.set()

    def cancel_all(self) -> None:
        """Shutting down: every waiting call is refused."""
        with self._lock:
            waiting, self._pending = list(self._pending.values()), {}
        for pending in waiting:
            pending.decided.set()
