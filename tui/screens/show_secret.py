"""A secret shown once."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class ShowSecret(ModalScreen[None]):
    """A secret shown once (a new token), in a box the owner can select and copy from."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, title: str, secret: str) -> None:
        super().__init__()
        self._title, self._secret = title, secret

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="title", markup=False)
            yield Input(value=self._secret, id="secret")
            yield Static("It is shown only now: copy it, then Esc.", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
