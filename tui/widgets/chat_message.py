"""One message in the chat's thread."""

from __future__ import annotations

from textual.widgets import Static


class ChatMessage(Static):
    """One message in the thread; an answer is updated in place as its tokens come."""
