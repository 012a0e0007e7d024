"""Tool calls waiting for the owner (Approvals tab): A approves, D denies."""

from __future__ import annotations

from textual.binding import Binding

from tui.keyed_table import KeyedTable


class ApprovalsTable(KeyedTable):
    BINDINGS = [
        Binding("a", "decide('approve')", "Approve"),
        Binding("d", "decide('deny')", "Deny"),
    ]

    class Decide(KeyedTable.RowAsked):
        """Approve or deny this call: ``decision`` is "approve" or "deny"."""

        def __init__(self, key: str | None, decision: str) -> None:
            super().__init__(key)
            self.decision = decision

    def action_decide(self, decision: str) -> None:
        self.post_message(self.Decide(self.cursor_key, decision))
