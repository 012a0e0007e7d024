"""F1: the keys, everywhere in the app."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# flurry — keys

| key | where | does |
|---|---|---|
| **F1** or **?** | anywhere | this help |
| **F2 … F6** | anywhere | Chat, Data, Skills, Approvals, Identity |
| **Tab / Shift+Tab** | anywhere | next / previous field |
| **Ctrl+T** | anywhere | dark or light theme |
| **Ctrl+Q** | anywhere | quit (the node keeps your data sealed) |
| **Enter** | chat box | ask |
| **Esc** | chat | stop the answer being written |
| **Ctrl+N** | chat | new conversation |
| **Ctrl+R** | chat | rename this conversation |
| **Ctrl+O** | chat | the sources of the last answer; **Enter** opens one beside the chat |
| **Ctrl+L** | chat | the list of conversations; **Enter** opens, **Del** deletes |
| **Enter** | data: path box | add that file or folder |
| **Enter** | data: search box | search your notes (empty: list the documents) |
| **Del** | data: documents | forget the document |
| **Enter** | skills: source box | install a skill (you review its permissions first) |
| **E** / **P** / **Del** | skills list | enable or disable / when its tools may run / remove |
| **R** | skills list | review tools changed since you approved the skill (old against new) |
| **A** / **D** | approvals list | approve / deny the tool call |
| **A** / **E** / **D** | agent's drafts | send the draft / edit it first (**Ctrl+S** sends) / discard it |
| **Del** | inbox | remove a peer's message |
| **N** / **Del** | identity: peers, tokens | add a peer by URL, make a token / revoke a token, withdraw a grant |
| **N** | identity: contracts | delegate a task to your pinned peers: watch the bids, **Enter** awards one, **N** nobody |

Errors show as notifications with the reason; nothing you typed is lost.
"""


class HelpScreen(ModalScreen[None]):
    # "dismiss" is Screen's own action: it closes the screen with None.
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)
