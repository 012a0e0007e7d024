"""Contracts bought and sold (Identity tab): N delegates a new task to the pinned peers."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message

from tui.keyed_table import KeyedTable


class ContractsTable(KeyedTable):
    BINDINGS = [Binding("n", "delegate", "Delegate a task")]

    class Delegate(Message):
        """The owner asked to delegate a new task."""

    def action_delegate(self) -> None:
        self.post_message(self.Delegate())
