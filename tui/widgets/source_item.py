"""One source of the last answer, in the list under the thread."""

from __future__ import annotations

from textual.widgets import Label, ListItem


class SourceItem(ListItem):
    def __init__(self, source: dict, number: int, cited: bool, label: str) -> None:
        super().__init__(Label(label, markup=False))
        self.source, self.number, self.cited = source, number, cited
