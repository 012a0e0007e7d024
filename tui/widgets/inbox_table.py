"""Peers' messages the node kept for the owner (Approvals tab): Del removes one."""

from __future__ import annotations

from textual.binding import Binding

from tui.keyed_table import KeyedTable


class InboxTable(KeyedTable):
    BINDINGS = [Binding("delete,x", "remove", "Remove message")]

    class Remove(KeyedTable.RowAsked):
        """Remove this message from the inbox."""

    def action_remove(self) -> None:
        self.post_message(self.Remove(self.cursor_key))
