"""The app's small screens, one per module: help, a line of text, yes/no, the permission
review, the tool policy, a changed tool's review, a secret shown once, a delegation as it runs. Each answers by dismissing with a value."""

from tui.screens.ask_text import AskText
from tui.screens.confirm import Confirm
from tui.screens.edit_text import EditText
from tui.screens.help import HelpScreen
from tui.screens.permission_review import PermissionReview
from tui.screens.show_secret import ShowSecret
from tui.screens.tool_policy import ToolPolicy
from tui.screens.tool_review import ToolReview
from tui.screens.watch_delegation import WatchDelegation

__all__ = [
    "AskText",
    "Confirm",
    "EditText",
    "HelpScreen",
    "PermissionReview",
    "ShowSecret",
    "ToolPolicy",
    "ToolReview",
    "WatchDelegation",
]
