"""What the inbox agent did or proposes (Approvals tab): A sends the draft, E edits it and
sends, D discards it."""

from __future__ import annotations

from textual.binding import Binding

from tui.keyed_table import KeyedTable


class DraftsTable(KeyedTable):
    BINDINGS = [
        Binding("a", "act('approve')", "Send draft"),
        Binding("e", "act('edit')", "Edit and send"),
        Binding("d", "act('discard')", "Discard"),
    ]

    class Act(KeyedTable.RowAsked):
        """Do ``action`` ("approve", "edit" or "discard") with this item's draft."""

        def __init__(self, key: str | None, action: str) -> None:
            super().__init__(key)
            self.action = action

    def action_act(self, action: str) -> None:
        self.post_message(self.Act(self.cursor_key, action))
