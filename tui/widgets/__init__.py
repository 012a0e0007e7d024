"""The app's widgets, one per module. A widget talks to the node only through the client its
pane was given; it tells its parent what the owner asked for with a message (a table's key
press, a failed call), and never looks another widget up."""

from tui.keyed_table import KeyedTable
from tui.widgets.approvals_pane import ApprovalsPane
from tui.widgets.approvals_table import ApprovalsTable
from tui.widgets.chat_message import ChatMessage
from tui.widgets.chat_pane import ChatPane
from tui.widgets.conversation_item import ConversationItem
from tui.widgets.conversation_list import ConversationList
from tui.widgets.data_pane import DataPane
from tui.widgets.documents_table import DocumentsTable
from tui.widgets.drafts_table import DraftsTable
from tui.widgets.grants_table import GrantsTable
from tui.widgets.identity_pane import IdentityPane
from tui.widgets.inbox_table import InboxTable
from tui.widgets.pane import Pane
from tui.widgets.peers_table import PeersTable
from tui.widgets.skills_pane import SkillsPane
from tui.widgets.skills_table import SkillsTable
from tui.widgets.source_item import SourceItem
from tui.widgets.tokens_table import TokensTable

__all__ = [
    "ApprovalsPane",
    "ApprovalsTable",
    "ChatMessage",
    "ChatPane",
    "ConversationItem",
    "ConversationList",
    "DataPane",
    "DocumentsTable",
    "DraftsTable",
    "GrantsTable",
    "IdentityPane",
    "InboxTable",
    "KeyedTable",
    "Pane",
    "PeersTable",
    "SkillsPane",
    "SkillsTable",
    "SourceItem",
    "TokensTable",
]
