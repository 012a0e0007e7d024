"""The owner's client of a running node: the same signed API any peer uses.

`flurry ask` and `flurry chat` come here when `flurry serve` holds the home; they sign
with the owner's key, and the owner's DID holds every grant.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx

from identity.did_key import verification_method_id
from identity.keyring import UnlockedKeyring
from identity.signing_client import async_signed_client, signed_client
from node.errors import NodeError


class NodeUnavailable(NodeError):
    """The running node refused or failed the request; the message says why."""


class NodeClient:
    def __init__(self, url: str, keys: UnlockedKeyring) -> None:
        self.url = url.rstrip("/")
        self._http = signed_client(
            keys.owner_key,
            verification_method_id(keys.owner_did),
            base_url=self.url,
            timeout=httpx.Timeout(10, read=600),
        )

    def close(self) -> None:
        self._http.close()

    def ask(
        self, question: str, k: int = 3, conversation: str | None = None, tools: bool = False
    ) -> Iterator[dict]:
        """The node's events for one question: conversation, queued, sources, token…, done (or
        error). Pass the conversation id of an earlier answer to continue that conversation.
        With ``tools`` the node may run a skill's tool: then "approval" (answer it with
        ``decide_approval``, the node waits) and "tool" come before the answer."""
        body = {
            "question": question,
            "k": k,
            **({"conversation": conversation} if conversation else {}),
        }
        if tools:
            body["tools"] = True
        with self._http.stream("POST", "/api/ask", json=body) as response:
            if response.status_code != 200:
                response.read()
                raise NodeUnavailable(_problem(response))
            for line in response.iter_lines():
                if line.strip():
                    event = json.loads(line)
                    if event.get("type") == "error":
                        raise NodeUnavailable(event.get("detail", "the node failed to answer"))
                    yield event

    def decide_approval(self, approval_id: str, approve: bool) -> None:
        decision = "approve" if approve else "deny"
        response = self._http.post(
            "/api/owner/approvals/decide", json={"id": approval_id, "decision": decision}
        )
        if response.status_code != 200:
            raise NodeUnavailable(_problem(response))

    def status(self) -> dict:
        response = self._http.get("/api/status")
        if response.status_code != 200:
            raise NodeUnavailable(_problem(response))
        return response.json()


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("detail") or body.get("title")
    except ValueError:
        detail = response.text[:200]
    retry = response.headers.get("retry-after")
    return f"the node answered {response.status_code}: {detail}" + (
        f" (retry in {retry} s)" if retry else ""
    )


class AsyncNodeClient:
    """The owner's asynchronous client, for the terminal app: nothing it does blocks the UI.

    Every call raises NodeUnavailable with the node's reason (its problem+json detail) or
    why the node could not be reached; callers show that line, never a traceback."""

    def __init__(self, url: str, keys: UnlockedKeyring) -> None:
        self.url = url.rstrip("/")
        self.owner_did = keys.owner_did
        self._http = async_signed_client(
            keys.owner_key,
            verification_method_id(keys.owner_did),
            base_url=self.url,
            timeout=httpx.Timeout(10, read=600),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, body: dict | None = None) -> object:
        try:
            response = await self._http.request(method, path, json=body)  # None: no body
        except httpx.HTTPError as e:
            raise NodeUnavailable(
                f"cannot reach the node at {self.url}: {e or type(e).__name__}"
            ) from None
        if response.status_code >= 400:
            raise NodeUnavailable(_problem(response))
        return response.json()

    async def stream(self, path: str, body: dict) -> AsyncIterator[dict]:
        """The NDJSON events of a streaming route; an in-band error event is raised."""
        try:
            async with self._http.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise NodeUnavailable(_problem(response))
                async for line in response.aiter_lines():
                    if line.strip():
                        event = json.loads(line)
                        if event.get("type") == "error":
                            raise NodeUnavailable(event.get("detail", "the node failed"))
                        yield event
        except httpx.HTTPError as e:
            raise NodeUnavailable(f"lost the node at {self.url}: {e or type(e).__name__}") from None

    def ask(
        self, question: str, k: int = 3, conversation: str | None = None, tools: bool = False
    ) -> AsyncIterator[dict]:
        body = {
            "question": question,
            "k": k,
            **({"conversation": conversation} if conversation else {}),
        }
        if tools:
            body["tools"] = True
        return self.stream("/api/ask", body)

    def add(self, path: str, tags: list[str] | None = None) -> AsyncIterator[dict]:
        return self.stream("/api/owner/documents/add", {"path": path, "tags": tags or []})
