"""A skill's tools that changed (or appeared) since the owner approved it: old against new."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, SelectionList, Static


class ToolReview(ModalScreen[list[str] | None]):
    """Each tool of a skill waiting for review: the version the owner approved, the version it
    lists now, and the difference. Dismisses with the tools to accept (their new versions are
    pinned and they run again), or None to leave them disabled."""

    BINDINGS = [Binding("ctrl+a", "accept", "Accept"), Binding("escape", "later", "Later")]

    def __init__(self, skill: dict) -> None:
        super().__init__()
        self.skill = skill

    def compose(self) -> ComposeResult:
        name = self.skill.get("name")
        changes = self.skill.get("review", [])
        with Vertical(classes="dialog", id="tool-review"):
            yield Label(
                f"{name}: tools changed since you approved it", classes="title", markup=False
            )
            yield Static("Each stays disabled until you accept its new version.", markup=False)
            with VerticalScroll(id="tool-changes"):
                for change in changes:
                    tool = change["name"]
                    what = {
                        "new": "new tool",
                        "refused": "refused",
                    }.get(change["change"], "changed: " + ", ".join(change.get("parts", [])))
                    yield Label(f"tool {tool} ({what})", classes="heading", markup=False)
                    if change.get("old_text"):
                        yield Static(
                            "approved:\n" + change["old_text"], markup=False, id=f"old-{tool}"
                        )
                    if change.get("new_text"):
                        yield Static(
                            "now listed:\n" + change["new_text"], markup=False, id=f"new-{tool}"
                        )
                    if change["change"] != "new":
                        yield Static("\n".join(change.get("diff", [])), markup=False)
            acceptable = [c["name"] for c in changes if c["change"] != "refused"]
            yield Label("Accept (untick what you keep disabled):" if acceptable else "")
            yield SelectionList[str](*[(t, t, True) for t in acceptable], id="accept")
            with Horizontal(classes="buttons"):
                yield Button("Accept (Ctrl+A)", id="accept-button", variant="success")
                yield Button("Later (Esc)", id="later")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_accept() if event.button.id == "accept-button" else self.action_later()

    def action_accept(self) -> None:
        self.dismiss(list(self.query_one("#accept", SelectionList).selected))

    def action_later(self) -> None:
        self.dismiss(None)
