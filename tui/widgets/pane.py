"""What the five tabs have in common: the node's client, the display mask, and how a failure
reaches the app (a message, which the app shows as a notification)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from textual.containers import Vertical
from textual.message import Message

from node.client import AsyncNodeClient, NodeUnavailable
from tui.format import masked


class Pane(Vertical):
    """One tab's content. It talks to the node only through the signed client the app hands
    it, in workers, so the screen never waits on the node."""

    FIRST: ClassVar[str] = ""  # the field that takes the focus when the tab is chosen by its key

    class Failed(Message):
        """A call to the node failed; ``error`` says why in the owner's words."""

        def __init__(self, error: BaseException) -> None:
            super().__init__()
            self.error = error

    def __init__(self, client: AsyncNodeClient, mask: Mapping[str, str], **kwargs) -> None:
        """``mask`` replaces values on screen (real → shown); see FlurryApp."""
        super().__init__(**kwargs)
        self.client = client
        self.mask = mask

    async def refresh_data(self) -> None:
        """Fetch what the pane shows; called when its tab opens."""

    def focus_first(self) -> None:
        self.query_one(self.FIRST).focus()

    async def api(self, method: str, path: str, body: dict | None = None) -> Any:
        """One call to the node: its JSON answer, read by the fields its route documents. On
        failure the app is told the reason, and this is None."""
        try:
            return await self.client.call(method, path, body)
        except NodeUnavailable as e:
            self.fail(e)
            return None

    def fail(self, error: BaseException) -> None:
        self.post_message(self.Failed(error))

    def shown(self, text: str) -> str:
        return masked(text, self.mask)
