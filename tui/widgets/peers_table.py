"""The pinned peer nodes (Identity tab): N adds one by URL."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message

from tui.keyed_table import KeyedTable


class PeersTable(KeyedTable):
    BINDINGS = [Binding("n", "add", "Add peer")]

    class Add(Message):
        """The owner asked to pin a new peer."""

    def action_add(self) -> None:
        self.post_message(self.Add())
