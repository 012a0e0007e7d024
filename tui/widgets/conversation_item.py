"""A stored conversation in the chat's list."""

from __future__ import annotations

from textual.widgets import Label, ListItem


class ConversationItem(ListItem):
    def __init__(self, conversation: dict, label: str) -> None:
        super().__init__(Label(label, markup=False))
        self.conversation = conversation
