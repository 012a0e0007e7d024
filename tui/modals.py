"""The names tests/test_tui.py imports from here; the screens live in tui/screens/, one per module."""

from tui.screens import (
    AskText,
    Confirm,
    EditText,
    HelpScreen,
    PermissionReview,
    ShowSecret,
    ToolPolicy,
)

__all__ = [
    "AskText",
    "Confirm",
    "EditText",
    "HelpScreen",
    "PermissionReview",
    "ShowSecret",
    "ToolPolicy",
]
