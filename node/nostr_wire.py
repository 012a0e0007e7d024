"""Private agent-to-agent messages over Nostr: the relays, the inbox, and the wiring into tasks.

The node reads and writes NIP-17 messages in NIP-59 gift wraps (identity.nostr_key) through
the relays its owner configured, and through no others. An incoming message from a pinned
peer whose DID holds the "ask" grant becomes a job on the same model queue A2A tasks use
(node.a2a's answer, drawing only on the grant's tags), and the answer goes back gift-wrapped
as a reply. Every other message (strangers, peers without the grant, replies to what this
node asked) waits, sealed, in the inbox for the owner. A reply is never answered, so two
nodes that granted each other cannot talk forever.

nostr-sdk is async (uniffi); all its network use stays in this module, on one event loop in
one thread per wire. The rest of the node calls the wire's plain methods.

Relays resend, and gift wraps carry times up to two days in the past (NIP-59), so each wrap
id is remembered (sealed) and the subscription looks back two days before the watermark: the
time of the last subscription whose stored events every relay finished sending. Wraps older
than that window are ignored.

Vault records (all sealed):

- ``nostr-relay``  key = relay URL      → {url, added_at}
- ``nostr-peer``   a pinned peer's key, from its signed card (node.nostr_peers)
- ``nostr-inbox``  key = wrap id        → the message, who sent it and why it waits
- ``nostr-seen``   key = wrap id        → {at}: wraps already handled
- ``nostr-state``  key = "watermark"    → {since}
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import nostr_sdk

from agent.grants import Grants, NotGranted, QuotaExceeded
from agent.incoming import DISCLOSURE_HEADER, Incoming
from agent.queue import ModelQueue, QueueFull
from agent.receipts import ReceiptRejected
from agent.receipts import accept as accept_receipt
from identity.nostr_key import (
    KIND_GIFT_WRAP,
    TWEAK_SECONDS,
    GiftWrapRejected,
    PrivateMessage,
    gift_wrap,
    public_note,
    rumor_json,
    unwrap,
)
from node.errors import NodeError
from node.nostr_peers import peer_did_for
from node.peering import AnswerWork, PeeringNode, answer_work
from store.vault import Vault


class WireNode(PeeringNode, Protocol):
    """The node as the wire uses it (node.node.Node is one). A protocol rather than an import:
    node.node builds the skills' broker, which publishes through this module."""

    grants: Grants


T = TypeVar("T")

RELAY_KIND, INBOX_KIND, SEEN_KIND, STATE_KIND = (
    "nostr-relay",
    "nostr-inbox",
    "nostr-seen",
    "nostr-state",
)
# Anyone can write to the node's key: messages from keys that are no pinned peer's stop being
# kept once this many wait, so a stranger cannot fill the vault. Peers' messages are always kept.
MAX_FROM_STRANGERS = 200
# The tag of a reply that carries the answer's receipt (agent.receipts.carrier text), inside
# the seal: a private message's rumor, so relays never see it.
RECEIPT_TAG = "flurry-receipt"
CONNECT_SECONDS = 10
SEND_SECONDS = 30
_log = logging.getLogger(__name__)


class NostrError(NodeError):
    """A relay, recipient or message the node cannot use; the message says what to do."""


# --- relays -----------------------------------------------------------------------------------


def check_relay_url(url: str) -> str:
    """The relay URL as nostr-sdk spells it; NostrError unless it is ws:// or wss:// with a host."""
    url = url.strip()
    if not url.lower().startswith(("ws://", "wss://")):
        raise NostrError(
            f"{url!r} is not a relay URL: relays are ws:// or wss:// (e.g. wss://relay.example.org)"
        )
    try:
        return str(nostr_sdk.RelayUrl.parse(url))
    except nostr_sdk.NostrSdkError as e:
        raise NostrError(f"{url!r} is not a relay URL: {e}") from None


def add_relay(vault: Vault, url: str) -> str:
    url = check_relay_url(url)
    vault.put_record(RELAY_KIND, url, {"url": url, "added_at": time.time()})
    return url


def list_relays(vault: Vault) -> list[str]:
    return [value["url"] for _, value in vault.records(RELAY_KIND)]


def remove_relay(vault: Vault, url: str) -> bool:
    try:
        url = check_relay_url(url)
    except NostrError:
        return False
    return vault.delete_record(RELAY_KIND, url)


# --- the inbox ----------------------------------------------------------------------------------


def inbox(vault: Vault) -> list[dict]:
    """Messages waiting for the owner, oldest first."""
    return sorted((value for _, value in vault.records(INBOX_KIND)), key=lambda m: m["received_at"])


def remove_from_inbox(vault: Vault, message_id: str) -> bool:
    for key, value in vault.records(INBOX_KIND):
        if message_id in (key, value["message_id"]):
            return vault.delete_record(INBOX_KIND, key)
    return False


def _to_inbox(
    vault: Vault, message: PrivateMessage, peer_did: str | None, why: str, **extra: str
) -> None:
    vault.put_record(
        INBOX_KIND,
        message.wrap_id,
        {
            "id": message.wrap_id,
            "message_id": message.rumor_id,
            "from": message.sender,
            "npub": nostr_sdk.PublicKey.parse(message.sender).to_bech32(),
            "peer_did": peer_did,
            "text": message.text,
            "sent_at": message.created_at,
            "received_at": time.time(),
            "reply_to": message.reply_to,
            "agent_made": message.agent_made,
            "why": why,
            **extra,  # receipt_id or receipt_error, for an answer that carried a receipt
        },
    )


def incoming_from_nostr(message: PrivateMessage, peer_did: str | None) -> Incoming:
    """A private message as the inbox agent reads it: the seal's signature proved the sender's
    key (and, for a pinned peer, its DID); the NIP-32 agent-made label becomes the disclosure
    header, so the policy's guard reads one thing on every channel."""
    headers = {DISCLOSURE_HEADER.lower(): "nostr agent-made label"} if message.agent_made else {}
    return Incoming(
        channel="nostr",
        id=message.rumor_id,
        sender=message.sender,
        text=message.text,
        peer_did=peer_did,
        authenticated=True,
        headers=headers,
        received_at=time.time(),
        reply_to=message.reply_to,
    )


def _log_failure(handled: asyncio.Future) -> None:
    if not handled.cancelled() and handled.exception() is not None:
        _log.error("nostr: the inbox agent failed on a message", exc_info=handled.exception())


# --- the wire -----------------------------------------------------------------------------------


class NostrWire:
    """The node's connection to its relays, on an event loop of its own.

    ``model_queue`` is where granted peers' questions are answered; without one (a command
    run while no server holds the home) the wire only sends. ``listen=False`` sends only.
    """

    def __init__(
        self,
        node: WireNode,
        *,
        model_queue: ModelQueue | None = None,
        listen: bool = True,
        on_message: Callable[[Incoming], object] | None = None,
    ) -> None:
        self.node = node
        # The inbox agent (node.inbox_agent): every message the wire does not answer goes to
        # it too, off the wire's loop, so the owner's rules apply to it.
        self._on_message = on_message
        self.key = node.keys.nostr_key
        self._model_queue = model_queue
        self._listen = listen and model_queue is not None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: nostr_sdk.Client | None = None
        self._listener: concurrent.futures.Future[None] | None = None
        self._answers: set[asyncio.Task] = set()
        self._relays: list[str] = []
        self._lock = threading.Lock()  # start, stop and reload come from the API's threads
        self.counts: Counter[str] = Counter()
        self.max_from_strangers = MAX_FROM_STRANGERS

    @property
    def running(self) -> bool:
        return self._loop is not None

    def status(self) -> dict:
        return {
            "npub": self.key.npub,
            "pubkey": self.key.public_key_hex,
            "running": self.running,
            "relays": list(self._relays),
            **{
                k: self.counts[k]
                for k in ("received", "answered", "to_inbox", "rejected", "dropped", "sent")
            },
        }

    # --- life cycle (any thread) ---

    def start(self) -> bool:
        """Connect to the configured relays and, when listening, subscribe; False if none are configured."""
        with self._lock:
            if self._loop is not None:
                return True
            relays = list_relays(self.node.vault)
            if not relays:
                return False
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="nostr-wire", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            try:
                self._call(self._connect(relays), CONNECT_SECONDS + 5)
            except BaseException:
                self._stop_loop()
                raise
            if self._listen:
                self._listener = asyncio.run_coroutine_threadsafe(self._listen_forever(), loop)
            return True

    def stop(self) -> None:
        with self._lock:
            if self._loop is None:
                return
            try:
                self._call(self._shutdown(), 15)
            except (
                Exception
            ):  # a relay that does not say goodbye must not keep the node from stopping
                _log.exception("nostr: the relays did not shut down cleanly")
            self._stop_loop()

    def reload(self) -> None:
        """Pick up a changed relay list (stop, then start again if any relay is left)."""
        self.stop()
        self.start()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = self._client = self._listener = None
        self._relays = []
        if loop is not None:
            assert thread is not None  # start() sets the two together
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._loop is None:
            raise NostrError("no relays are configured; add one: flurry nostr relays add wss://…")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise NostrError(f"the relays did not answer within {timeout:.0f} s") from None

    def __enter__(self) -> NostrWire:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- sending (any thread but the wire's) ---

    def send(
        self,
        recipient: bytes,
        text: str,
        *,
        peer_did: str | None = None,
        reply_to: str | None = None,
    ) -> dict:
        """Gift-wrap ``text`` for ``recipient`` and publish it; audited before it leaves."""
        return self._call(
            self._send(recipient, text, peer_did=peer_did, reply_to=reply_to), SEND_SECONDS + 5
        )

    def publish(self, text: str, *, skill: str | None = None) -> dict:
        """Publish a public note signed by the node's Nostr key; audited before it leaves."""
        return self._call(self._publish(text, skill), SEND_SECONDS + 5)

    def announce(self, event: nostr_sdk.Event, details: dict) -> dict:
        """Publish ``event``, built and signed with this node's Nostr key by the caller (a skill
        release's NIP-94 announcement, node.skill_publish); audited before it leaves."""
        if event.author().to_hex() != self.key.public_key_hex or not event.verify():
            raise NostrError("only an event signed with this node's Nostr key is announced")
        return self._call(self._announce(event, details), SEND_SECONDS + 5)

    # --- on the wire's loop ---

    async def _connect(self, relays: list[str]) -> None:
        self._client = nostr_sdk.Client()
        for url in relays:
            await self._client.add_relay(nostr_sdk.RelayUrl.parse(url))
        await self._client.connect()
        self._relays = relays
        if self._listen:
            # Taken before subscribing, so no event slips between the two.
            self._notifications = self._client.notifications()
            await self._subscribe()

    async def _subscribe(self) -> None:
        vault = self.node.vault
        watermark = (vault.get_record(STATE_KIND, "watermark") or {}).get("since")
        self._since = (watermark if watermark is not None else int(time.time())) - TWEAK_SECONDS
        self._subscribed_at = int(time.time())
        for key, value in vault.records(SEEN_KIND):  # older than the window: filtered out anyway
            if value["at"] < self._since:
                vault.delete_record(SEEN_KIND, key)
        pubkey = nostr_sdk.PublicKey.parse(self.key.public_key_hex)
        wanted = (
            nostr_sdk.Filter()
            .kind(nostr_sdk.Kind(KIND_GIFT_WRAP))
            .pubkey(pubkey)
            .since(nostr_sdk.Timestamp.from_secs(self._since))
        )
        assert self._client is not None  # _connect made it before subscribing
        output = await self._client.subscribe(nostr_sdk.ReqTarget.auto([wanted]))
        self._subscription = output.id
        self._waiting_eose = {str(url) for url in output.success}
        for url, why in output.failed.items():
            _log.warning("nostr: %s refused the subscription: %s", url, why)

    async def _listen_forever(self) -> None:
        while True:
            note = await self._notifications.next()
            if note is None or note.is_shutdown():
                return
            try:
                if note.is_new_event():
                    self._on_event(note.event)
                elif note.is_message():
                    self._on_relay_message(str(note.relay_url), note.message.as_enum())
            except Exception:  # one bad event, or a vault hiccup, must not end the listener
                _log.exception("nostr: an incoming event could not be handled")

    def _on_relay_message(self, relay: str, message) -> None:
        if message.is_end_of_stored_events() and message.subscription_id == self._subscription:
            self._waiting_eose.discard(relay)
            if (
                not self._waiting_eose
            ):  # every relay has sent what it held: the node has looked up to then
                self.node.vault.put_record(STATE_KIND, "watermark", {"since": self._subscribed_at})

    def _on_event(self, event: nostr_sdk.Event) -> None:
        vault = self.node.vault
        wrap_id, at = event.id().to_hex(), event.created_at().as_secs()
        if (
            event.kind().as_u16() != KIND_GIFT_WRAP
            or at < self._since
            or vault.get_record(SEEN_KIND, wrap_id)
        ):
            return  # resent, or older than the node's last look
        vault.put_record(SEEN_KIND, wrap_id, {"at": at})
        self.counts["received"] += 1
        try:
            message = unwrap(self.key, event.as_json())
        except GiftWrapRejected as rejected:
            self.counts["rejected"] += 1
            _log.warning("nostr: refused gift wrap %s: %s", wrap_id, rejected)
            return
        self.handle(message)

    def handle(self, message: PrivateMessage) -> None:
        """A task for a granted peer's question; the inbox for everything else."""
        vault = self.node.vault
        peer_did = peer_did_for(vault, message.sender)
        if peer_did is None:
            if sum(1 for m in inbox(vault) if m["peer_did"] is None) >= self.max_from_strangers:
                self.counts["dropped"] += 1
                _log.warning(
                    "nostr: dropped a message from %s: %d from strangers already wait",
                    message.sender,
                    self.max_from_strangers,
                )
                return None
            return self._wait(message, None, "from a Nostr key that is not a pinned peer")
        if message.reply_to is not None:
            _to_inbox(vault, message, peer_did, "a reply", **self._kept_receipt(message, peer_did))
            self.counts["to_inbox"] += 1
            return self._to_agent(message, peer_did)
        try:
            grant = self.node.grants.authorize(peer_did, "ask", owner_did=self.node.keys.owner_did)
        except (NotGranted, QuotaExceeded) as refused:
            return self._wait(message, peer_did, str(refused))
        assert self._model_queue is not None  # only a wire with a queue listens for questions
        try:
            job = self._model_queue.submit(
                answer_work(self.node, peer_did, grant, message.text, channel="nostr"),
                lane="peer",
            )
        except QueueFull:
            return self._wait(message, peer_did, "the model was busy; not answered")
        task = asyncio.get_running_loop().create_task(self._answer(message, peer_did, job))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    def _kept_receipt(self, message: PrivateMessage, peer_did: str) -> dict[str, str]:
        """A pinned peer's answer may carry its receipt: kept (sealed) when it holds — signed
        by that peer, made out to this node, signing this very text — said in the inbox if not."""
        carried = next((t[1] for t in message.tags if len(t) == 2 and t[0] == RECEIPT_TAG), None)
        if carried is None:
            return {}
        try:
            rid = accept_receipt(
                self.node.vault,
                carried,
                issuer=peer_did,
                requester=self.node.keys.node_did,
                messages=None,
                answer=message.text,
            )
        except ReceiptRejected as rejected:
            return {"receipt_error": f"{rejected.reason}: {rejected}"}
        return {"receipt_id": rid}

    def _wait(self, message: PrivateMessage, peer_did: str | None, why: str) -> None:
        _to_inbox(self.node.vault, message, peer_did, why)
        self.counts["to_inbox"] += 1
        self._to_agent(message, peer_did)

    def _to_agent(self, message: PrivateMessage, peer_did: str | None) -> None:
        if self._on_message is None:
            return
        incoming = incoming_from_nostr(message, peer_did)
        handled = asyncio.get_running_loop().run_in_executor(None, self._on_message, incoming)
        handled.add_done_callback(_log_failure)

    async def _answer(self, message: PrivateMessage, peer_did: str, job) -> None:
        try:
            text = (await asyncio.to_thread(lambda: "".join(job))).strip()
            # The answer's signed receipt (node.peering, agent.receipts) rides in the sealed
            # message, so only the asker reads it.
            receipt = job.work.receipt if isinstance(job.work, AnswerWork) else None
            await self._send(
                bytes.fromhex(message.sender),
                text or "(no answer)",
                peer_did=peer_did,
                reply_to=message.rumor_id,
                extra_tags=[[RECEIPT_TAG, receipt]] if receipt and text else None,
            )
            self.counts["answered"] += 1
        except asyncio.CancelledError:
            job.cancel()
            raise
        except (
            Exception
        ) as error:  # the model, the vault or every relay failed: the owner sees it in the inbox
            _log.exception("nostr: the answer to %s failed", message.rumor_id)
            _to_inbox(
                self.node.vault,
                message,
                peer_did,
                f"could not be answered ({type(error).__name__}: {error})",
            )
            self.counts["to_inbox"] += 1

    async def _send(
        self,
        recipient: bytes,
        text: str,
        *,
        peer_did: str | None,
        reply_to: str | None,
        extra_tags: list[list[str]] | None = None,
    ) -> dict:
        keys = self.node.keys
        try:
            rumor = rumor_json(
                self.key,
                recipient,
                text,
                reply_to=reply_to,
                owner_did=keys.owner_did,
                extra_tags=extra_tags,
            )
            wrap = gift_wrap(self.key, recipient, rumor)
        except ValueError as e:  # Nip44Error: an empty or over-long message, a key off the curve
            raise NostrError(str(e)) from None
        details = {
            "event": wrap.id().to_hex(),
            "message_id": json.loads(rumor)["id"],
            "to": recipient.hex(),
            "peer_did": peer_did,
            "relays": list(self._relays),
            "text": text,
            "in_reply_to": reply_to,
        }
        to = "nostr:" + nostr_sdk.PublicKey.parse(recipient.hex()).to_bech32()
        # Recorded before it leaves: AuditError stops the send rather than let it go unrecorded.
        self.node.audit.append(
            "nostr.reply" if reply_to else "nostr.send", target=to, details=details
        )
        delivered = await self._deliver(wrap, details["event"], to)
        return {**delivered, "message_id": details["message_id"], "to": to}

    async def _publish(self, text: str, skill: str | None) -> dict:
        try:
            note = public_note(self.key, text, owner_did=self.node.keys.owner_did)
        except ValueError as e:
            raise NostrError(str(e)) from None
        details = {
            "event": note.id().to_hex(),
            "relays": list(self._relays),
            "text": text,
            **({"skill": skill} if skill else {}),
        }
        self.node.audit.append("nostr.publish", target=self.key.uri, details=details)
        return await self._deliver(note, details["event"], self.key.uri)

    async def _announce(self, event: nostr_sdk.Event, details: dict) -> dict:
        event_id = event.id().to_hex()
        self.node.audit.append(
            "nostr.announce",
            target=self.key.uri,
            details={"event": event_id, "relays": list(self._relays), **details},
        )
        return await self._deliver(event, event_id, self.key.uri)

    async def _deliver(self, event: nostr_sdk.Event, event_id: str, to: str) -> dict:
        if self._client is None:  # _call refuses before this when the wire is not running
            raise NostrError("no relays are configured; add one: flurry nostr relays add wss://…")
        try:
            output = await self._client.send_event(
                event, ok_timeout=timedelta(seconds=SEND_SECONDS)
            )
            accepted, failed = (
                [str(u) for u in output.success],
                {str(u): why for u, why in output.failed.items()},
            )
        except nostr_sdk.NostrSdkError as e:  # no relay connected, a timeout
            accepted, failed = [], {"*": str(e)}
        if not accepted:
            self.node.audit.append(
                "nostr.send-failed", target=to, details={"event": event_id, "errors": failed}
            )
            raise NostrError(
                f"no relay accepted the message: {'; '.join(f'{u}: {w}' for u, w in failed.items()) or 'none connected'}"
            )
        self.counts["sent"] += 1
        return {"event_id": event_id, "relays": accepted, "failed": failed}

    async def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        for task in list(self._answers):
            task.cancel()
        if self._client is not None:
            await self._client.shutdown()


def run_briefly(node: WireNode, action: Callable[[NostrWire], T]) -> T:
    """Do ``action`` with a send-only wire, for a command run while no server holds the home."""
    with NostrWire(node, listen=False) as wire:
        if not wire.running:
            raise NostrError("no relays are configured; add one: flurry nostr relays add wss://…")
        return action(wire)
