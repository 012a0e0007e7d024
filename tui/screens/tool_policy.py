"""When each of a skill's tools may run."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select, Static

DECISIONS = ("allow", "ask", "deny")


class ToolPolicy(ModalScreen[dict[str, str] | None]):
    """Whether each of a skill's tools runs unasked, after the owner approves its arguments,
    or never. Dismisses with the changed tools ({tool: decision}), or None."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, skill: dict) -> None:
        super().__init__()
        self.skill = skill

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="policy"):
            yield Label(
                f"When may {self.skill.get('name')}'s tools run?", classes="title", markup=False
            )
            yield Static(
                "allow: unasked · ask: after you approve its arguments · deny: never", markup=False
            )
            for tool in self.skill.get("tools", []):
                yield Label(f"{tool['name']}: {tool.get('description', '')}", markup=False)
                yield Select(
                    [(d, d) for d in DECISIONS],
                    value=tool.get("policy", "ask"),
                    allow_blank=False,
                    id=f"policy-{tool['name']}",
                )
            with Horizontal(classes="buttons"):
                yield Button("Save (Ctrl+S)", id="save", variant="success")
                yield Button("Cancel (Esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_save() if event.button.id == "save" else self.action_cancel()

    def action_save(self) -> None:
        changed: dict[str, str] = {}
        for tool in self.skill.get("tools", []):
            chosen = str(self.query_one(f"#policy-{tool['name']}", Select).value)  # never blank
            if chosen != tool.get("policy", "ask"):
                changed[tool["name"]] = chosen
        self.dismiss(changed)

    def action_cancel(self) -> None:
        self.dismiss(None)
