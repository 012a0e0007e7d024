"""Tokens for local apps' /v1 API (Identity tab): N makes one, Del revokes one."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message

from tui.keyed_table import KeyedTable


class TokensTable(KeyedTable):
    BINDINGS = [Binding("n", "add", "New token"), Binding("delete,x", "remove", "Revoke")]

    class Add(Message):
        """The owner asked for a new token."""

    class Revoke(KeyedTable.RowAsked):
        """Revoke the token of this name."""

    def action_add(self) -> None:
        self.post_message(self.Add())

    def action_remove(self) -> None:
        self.post_message(self.Revoke(self.cursor_key))
