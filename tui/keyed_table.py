"""A table whose rows are keyed by the value they stand for (a path, a name, a DID)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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

    def refill(self, columns: Sequence[str], rows: Iterable[tuple[str, Sequence[object]]]) -> None:
        """Replace every row with ``rows`` (key, cells), keeping the cursor on the row with the
        same key when it is still there: a background refresh must not move the owner's
        cursor, or the next key pressed acts on another row than the one they chose."""
        kept = self.cursor_key
        self.clear(columns=True)
        self.add_columns(*columns)
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if kept is not None and kept in self.rows:
            self.move_cursor(row=self.get_row_index(kept))
