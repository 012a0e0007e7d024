"""Skill releases announced on Nostr: NIP-94 file-metadata events (kind 1063) tagged
``["t", "flurry-skill"]``, read from the owner's relays, from the Nostr keys of pinned peers only.

An announcement only says where a release manifest is (``url``), its sha256 (``x``) and size;
the manifest itself is then read and checked as any other (node.skill_catalog): the event's
signature proves who pointed at it, never what it is. Relays are other people's machines: the
query has a timeout and a limit, every event's signature is checked again here, events from keys
not asked for are dropped, and tags are bounded before they are used.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import timedelta

import nostr_sdk

KIND_FILE_METADATA = 1063  # NIP-94
SKILL_TAG = "flurry-skill"
MAX_ANNOUNCEMENTS = 200
QUERY_SECONDS = 5.0
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Announcement:
    pubkey: str  # the announcing Nostr key, hex
    url: str
    sha256: str
    size: int
    name: str
    version: str
    relay: str  # the relays asked, for the owner's "where from"


def fetch_announcements(
    relays: list[str], pubkeys: list[str], timeout: float = QUERY_SECONDS
) -> tuple[list[Announcement], list[str]]:
    """The skill announcements ``pubkeys`` made on ``relays`` (newest first), and why others were
    dropped. Nothing is asked when either list is empty."""
    if not relays or not pubkeys:
        return [], []
    events = asyncio.run(_query(relays, pubkeys, timeout))
    found, dropped = [], []
    wanted = set(pubkeys)
    for event in sorted(events, key=lambda e: e.created_at().as_secs(), reverse=True):
        try:
            found.append(_announcement(event, wanted, ", ".join(relays)))
        except ValueError as e:
            dropped.append(f"event {event.id().to_hex()}: {e}")
    return found[:MAX_ANNOUNCEMENTS], dropped


async def _query(relays: list[str], pubkeys: list[str], timeout: float) -> list[nostr_sdk.Event]:
    client = nostr_sdk.Client()
    try:
        for url in relays:
            await client.add_relay(nostr_sdk.RelayUrl.parse(url))
        await client.connect()
        wanted = (
            nostr_sdk.Filter()
            .kind(nostr_sdk.Kind(KIND_FILE_METADATA))
            .authors([nostr_sdk.PublicKey.parse(p) for p in pubkeys])
            .hashtag(SKILL_TAG)
            .limit(MAX_ANNOUNCEMENTS)
        )
        events = await client.fetch_events(
            nostr_sdk.ReqTarget.auto([wanted]), timeout=timedelta(seconds=timeout)
        )
        return list(events)[:MAX_ANNOUNCEMENTS]
    except nostr_sdk.NostrSdkError:
        return []  # no relay answered: nothing announced, as far as this node can tell
    finally:
        await client.shutdown()


def _announcement(event: nostr_sdk.Event, wanted: set[str], relay: str) -> Announcement:
    pubkey = event.author().to_hex()
    if pubkey not in wanted:
        raise ValueError(f"from {pubkey}, a key not asked for")
    if event.kind().as_u16() != KIND_FILE_METADATA or not event.verify():
        raise ValueError("not a signed file-metadata event")
    tags: dict[str, str] = {}
    topics = []
    for tag in list(event.tags())[:64]:
        values = tag.to_vec()
        if len(values) >= 2 and len(values[1]) <= 2048:
            tags.setdefault(values[0], values[1])
            if values[0] == "t":
                topics.append(values[1])
    if SKILL_TAG not in topics:
        raise ValueError("not tagged flurry-skill")
    missing = [k for k in ("url", "x", "size", "name", "version") if k not in tags]
    if missing:
        raise ValueError(f"missing tags: {', '.join(missing)}")
    if not _HEX64.match(tags["x"]) or not tags["size"].isdigit():
        raise ValueError("x must be sha256 hex and size a number")
    return Announcement(
        pubkey, tags["url"], tags["x"], int(tags["size"]), tags["name"], tags["version"], relay
    )
