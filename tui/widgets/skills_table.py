"""The installed skills (Skills tab): E enables or disables, P sets tool policy, R reviews
changed tools, Del removes."""

from __future__ import annotations

from textual.binding import Binding

from tui.keyed_table import KeyedTable


class SkillsTable(KeyedTable):
    BINDINGS = [
        Binding("e", "switch", "Enable/disable"),
        Binding("p", "policy", "Tool policy"),
        Binding("r", "review", "Review changed tools"),
        Binding("delete,x", "remove", "Remove"),
    ]

    class Toggle(KeyedTable.RowAsked):
        """Enable this skill if it is disabled, disable it if not."""

    class Policy(KeyedTable.RowAsked):
        """Set when this skill's tools may run."""

    class Remove(KeyedTable.RowAsked):
        """Remove this skill."""

    class Review(KeyedTable.RowAsked):
        """Review this skill's tools that changed since it was approved."""

    def action_review(self) -> None:
        self.post_message(self.Review(self.cursor_key))

    def action_policy(self) -> None:
        self.post_message(self.Policy(self.cursor_key))

    def action_switch(self) -> None:
        self.post_message(self.Toggle(self.cursor_key))

    def action_remove(self) -> None:
        self.post_message(self.Remove(self.cursor_key))
