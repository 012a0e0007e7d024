"""Several lines of text from the owner, starting from a draft (a reply the agent proposed)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, TextArea


class EditText(ModalScreen[str | None]):
    """The owner edits ``value``; Ctrl+S answers with the text, Esc cancels (None)."""

    BINDINGS = [
        Binding("ctrl+s", "done", "Send"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, prompt: str, value: str = "") -> None:
        super().__init__()
        self._prompt, self._value = prompt, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._prompt)
            yield TextArea(self._value, id="text")

    def action_done(self) -> None:
        text = self.query_one("#text", TextArea).text
        self.dismiss(text if text.strip() else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
