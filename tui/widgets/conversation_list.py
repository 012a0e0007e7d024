"""The stored conversations beside the chat: Enter opens one, Del deletes, R renames."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import ListView

from tui.widgets.conversation_item import ConversationItem


class ConversationList(ListView):
    BINDINGS = [Binding("delete,x", "delete", "Delete chat"), Binding("r", "rename", "Rename")]

    class Delete(Message):
        """The owner asked to delete ``conversation`` (it is not gone yet)."""

        def __init__(self, conversation: dict) -> None:
            super().__init__()
            self.conversation = conversation

    class Rename(Message):
        """The owner asked to rename the highlighted conversation (None: none is)."""

        def __init__(self, conversation: dict | None) -> None:
            super().__init__()
            self.conversation = conversation

    @property
    def highlighted_conversation(self) -> dict | None:
        item = self.highlighted_child
        return item.conversation if isinstance(item, ConversationItem) else None

    def action_delete(self) -> None:
        if (conversation := self.highlighted_conversation) is not None:
            self.post_message(self.Delete(conversation))

    def action_rename(self) -> None:
        self.post_message(self.Rename(self.highlighted_conversation))
