"""What the owner granted to whom (Identity tab): Del withdraws a peer's grants."""

from __future__ import annotations

from textual.binding import Binding

from tui.keyed_table import KeyedTable


class GrantsTable(KeyedTable):
    BINDINGS = [Binding("delete,x", "remove", "Withdraw grant")]

    class Withdraw(KeyedTable.RowAsked):
        """Withdraw every grant of this DID."""

    def action_remove(self) -> None:
        self.post_message(self.Withdraw(self.cursor_key))
