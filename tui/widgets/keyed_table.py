"""A table whose rows are keyed by the value they stand for (a path, a name, a DID)."""

from __future__ import annotations

from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable


class KeyedTable(DataTable):
    class RowAsked(Message):
        """The owner pressed a key for the row under the cursor; the pane holding the table
        decides what it means. ``key`` is the row's key (None: the table is empty)."""

        def __init__(self, key: str | None) -> None:
            super().__init__()
            self.key = key

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor: the real value, not as shown; None if empty."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
