"""Other nodes, seen from this one: their signed agent cards, their pinned DIDs, messages to them.

A peer is pinned at `flurry peers add`: the DID that signed its agent card is stored with its
URL, sealed in the vault (records of kind "peer"). Every later send fetches the card again and
refuses to go on if another DID signed it (`PeerChanged`: node.peering then follows the key
rotation chain the card may carry, node.rotation, and sends again only if it verifies). Messages go out through the a2a-sdk client over an
httpx client that signs each request with the node's key and labels it agent-made on the
owner's behalf (identity.signing_client); the caller records each send in the audit log.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.helpers import get_message_text, get_text_parts, new_text_message
from a2a.types import Artifact, Role, SendMessageRequest, Task, TaskState
from a2a.utils.errors import A2AError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.json_format import MessageToDict, ParseError

from agent.receipts import A2A_METADATA_KEY as RECEIPT_METADATA_KEY
from identity.jws import JWSRejected, verify_json
from identity.signing_client import async_signed_client
from node.errors import NodeError
from store.vault import Vault

CARD_PATH = "/.well-known/agent-card.json"  # where A2A puts an agent's card (A2A 1.0, 5.3)

PEER_KIND = "peer"


class PeerError(NodeError):
    """A peer cannot be reached, is not who it was, or refused; the message says which."""


class PeerChanged(PeerError):
    """The peer's card is signed by another DID than the pinned one. Nothing was sent; the
    caller may follow a rotation chain the (verified) ``card`` carries (node.rotation)."""

    def __init__(self, message: str, *, did: str, card: dict) -> None:
        super().__init__(message)
        self.did, self.card = did, card


@dataclass(frozen=True)
class Peer:
    name: str  # "" when added without --name
    did: str  # the node DID that signed its card when it was added
    url: str  # base URL: scheme://host[:port]
    added_at: float

    @property
    def label(self) -> str:
        return self.name or self.did


@dataclass(frozen=True)
class PeerReply:
    text: str  # the answer artifact's text ("" unless COMPLETED)
    task_id: str
    state: str  # "TASK_STATE_COMPLETED", "TASK_STATE_FAILED", …
    note: str  # the peer's status message, if any (why it failed, …)
    peer_did: str
    metadata: dict = field(default_factory=dict)  # the answer artifact's (node.infer: usage)
    receipt: str = ""  # the answer artifact's metadata["flurry.receipt"] (agent.receipts), if any


def base_url(url: str) -> str:
    """``http://host:port`` from what a user types: a base URL or the card's own URL."""
    url = url.strip().rstrip("/")
    return url.removesuffix(CARD_PATH)


# --- the agent card ----------------------------------------------------------------------------


def verify_card(card: object) -> str:
    """The DID of the node that signed ``card``; PeerError unless every signature holds and one DID made them."""
    signatures = card.get("signatures") if isinstance(card, dict) else None
    if not isinstance(card, dict) or not isinstance(signatures, list) or not signatures:
        raise PeerError("the agent card is not signed, so it cannot say whose node this is")
    try:
        signers = {verify_json(card, signature) for signature in signatures}
    except JWSRejected as rejected:
        raise PeerError(
            f"the agent card's signature does not verify ({rejected.reason}): {rejected}"
        ) from None
    if len(signers) != 1:
        raise PeerError(
            f"the agent card is signed by several DIDs ({', '.join(sorted(signers))}); cannot pin one"
        )
    return signers.pop()


async def fetch_peer_card(url: str, *, http: httpx.AsyncClient | None = None) -> tuple[dict, str]:
    """GET the peer's agent card and verify its signature: (card, the DID that signed it)."""
    base = base_url(url)
    async with AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        client = http
        try:
            response = await client.get(base + CARD_PATH)
            response.raise_for_status()
            card = response.json()
        except httpx.HTTPStatusError as error:
            raise PeerError(
                f"{base} has no agent card (HTTP {error.response.status_code} for {CARD_PATH})"
            ) from None
        except httpx.RequestError as error:
            raise PeerError(f"cannot reach {base}: {error}") from None
        except httpx.InvalidURL as error:
            raise PeerError(f"{url!r} is not a URL: {error}") from None
        except ValueError:
            raise PeerError(f"{base}{CARD_PATH} is not JSON") from None
    did = verify_card(card)
    # The signed card names the endpoint that messages go to; one on another origin would take
    # our signed requests somewhere the user never named.
    try:
        endpoints = [
            httpx.URL(i["url"])
            for i in card.get("supportedInterfaces", [])
            if i.get("protocolBinding") == "JSONRPC"
        ]
    except (TypeError, KeyError, AttributeError, httpx.InvalidURL):
        endpoints = []
    origin = httpx.URL(base)
    if not any(
        (e.scheme, e.host, e.port) == (origin.scheme, origin.host, origin.port) for e in endpoints
    ):
        raise PeerError(f"the agent card at {base} names no JSON-RPC endpoint on {base} itself")
    return card, did


# --- sending ----------------------------------------------------------------------------------


async def send_message(
    peer_url: str,
    text: str,
    *,
    key: Ed25519PrivateKey,
    keyid: str,
    owner_did: str,
    pinned_did: str | None = None,
    timeout: float = 300.0,
    metadata: dict | None = None,
) -> PeerReply:
    """Ask a peer one question as an A2A task and wait for its end.

    Signed with ``key`` (the node's) under ``keyid``, labelled agent-made on ``owner_did``'s
    behalf. With ``pinned_did``, refuses to send unless that DID signed the card now.
    Raises PeerError when the peer cannot be reached, is someone else, or refuses (401, 403,
    429, 503 with its Retry-After).
    """
    # The model may queue behind other questions: reading waits long, connecting does not.
    async with async_signed_client(
        key, keyid, owner_did, timeout=httpx.Timeout(timeout, connect=10)
    ) as http:
        card, did = await fetch_peer_card(peer_url, http=http)
        if pinned_did is not None and did != pinned_did:
            raise PeerChanged(
                f"{base_url(peer_url)} is now {did}, not the pinned {pinned_did}: not sending. "
                "If the peer's node changed on purpose, add it again.",
                did=did,
                card=card,
            )
        try:
            client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(
                parse_agent_card(card)
            )
        except (ParseError, ValueError, A2AError) as error:
            raise PeerError(f"cannot use the agent card of {base_url(peer_url)}: {error}") from None
        message = new_text_message(text, role=Role.ROLE_USER)
        if metadata:  # e.g. {"flurry.operation": "infer", …}: see node.infer
            message.metadata.update(metadata)
        request = SendMessageRequest(message=message)
        task: Task | None = None
        answer = ""
        try:
            async for event in client.send_message(request):
                if event.HasField("task"):
                    task = event.task
                elif event.HasField("message"):
                    answer = get_message_text(event.message, delimiter="")
        except A2AError as error:  # HTTP refusals (401, 403, 429, 503) and JSON-RPC errors alike
            raise PeerError(_refusal(base_url(peer_url), error)) from None
    if task is None:  # a message-only reply: allowed by A2A, not what flurry nodes send
        return PeerReply(answer, "", "message", "", did)
    answers = [a for a in task.artifacts if a.name == "answer"] or list(task.artifacts)
    note = (
        get_message_text(task.status.message, delimiter="")
        if task.status.HasField("message")
        else ""
    )
    return PeerReply(
        "".join(part for a in answers for part in get_text_parts(a.parts)).strip(),
        task.id,
        TaskState.Name(task.status.state),
        note,
        did,
        MessageToDict(answers[-1].metadata) if answers else {},
        carried_receipt(answers),
    )


def carried_receipt(artifacts: list[Artifact]) -> str:
    """The receipt carrier (agent.receipts.carrier) in the answer artifacts' metadata, as the
    peer sent it ("" when none): agent.receipts.accept checks it, sizes first."""
    carried = [
        a.metadata[RECEIPT_METADATA_KEY]
        for a in artifacts
        if a.HasField("metadata") and RECEIPT_METADATA_KEY in a.metadata
    ]
    return carried[-1] if carried and isinstance(carried[-1], str) else ""


def _refusal(url: str, error: A2AError) -> str:
    response = (
        error.__cause__.response if isinstance(error.__cause__, httpx.HTTPStatusError) else None
    )
    if response is None:
        return f"{url}: {error}"
    try:
        problem = response.json()
        detail = problem.get("detail") if isinstance(problem, dict) else None
    except ValueError:
        detail = None
    message = f"{url} refused (HTTP {response.status_code}): {detail or response.reason_phrase}"
    if retry_after := response.headers.get("retry-after"):
        message += f"; try again in {retry_after} s"
    return message


# --- pinned peers in the vault -------------------------------------------------------------


def add_peer(vault: Vault, url: str, did: str, name: str = "") -> Peer:
    """Pin ``did`` for ``url``, replacing any peer of the same name, DID or URL."""
    peer = Peer(name=name, did=did, url=base_url(url), added_at=time.time())
    for old in list_peers(vault):
        if old.did == did or old.url == peer.url or (name and old.name == name):
            vault.delete_record(PEER_KIND, old.name or old.did)
    vault.put_record(PEER_KIND, peer.name or peer.did, asdict(peer))
    return peer


def list_peers(vault: Vault) -> list[Peer]:
    return [Peer(**value) for _, value in vault.records(PEER_KIND)]


def find_peer(vault: Vault, ref: str) -> Peer | None:
    """The pinned peer named ``ref``, or with that DID, or at that URL."""
    for peer in list_peers(vault):
        if ref in (peer.name, peer.did) or base_url(ref) == peer.url:
            return peer
    return None
