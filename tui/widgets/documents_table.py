"""The documents in the vault, or a search's passages (Data tab); Del forgets one."""

from __future__ import annotations

from textual.binding import Binding

from tui.keyed_table import KeyedTable


class DocumentsTable(KeyedTable):
    BINDINGS = [Binding("delete,x", "forget", "Forget")]

    class Forget(KeyedTable.RowAsked):
        """Forget this document (a search's passages are keyed otherwise: the pane checks)."""

    def action_forget(self) -> None:
        self.post_message(self.Forget(self.cursor_key))
