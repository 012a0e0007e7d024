"""The names tests/test_tui.py imports from here; the widgets live in tui/widgets/, one per module."""

from tui.widgets import ChatMessage as Message  # the chat's message widget, under its old name
from tui.widgets import ChatPane, ConversationItem, DataPane, SkillsPane, SourceItem

__all__ = ["ChatPane", "ConversationItem", "DataPane", "Message", "SkillsPane", "SourceItem"]
