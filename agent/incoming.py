"""A message that arrived for the owner, and a reply the owner's agent may send: the shapes the
inbox agent (policy, triage, drafts) and the channels (mail over IMAP/SMTP, Nostr, A2A) share.

An ``Incoming`` is untrusted through and through: its text, its subject and every header were
written by whoever sent it. The channel fills it after its own checks (a mail's envelope
parsed within limits, a Nostr seal's signature checked, an A2A caller's signature checked);
what it proves is only ``sender`` (for mail: the From address, which proves nothing unless the
channel says ``authenticated``) and, where a signature was checked, ``peer_did``.

An ``Outgoing`` is what the agent hands a channel to send: the recipient is always the
incoming message's sender (the policy fixes it; no text can change it), threading comes from
the message it answers, and ``agent_made`` is always True — every channel labels it so
(mail: ``Auto-Submitted: auto-replied`` per RFC 3834 and a disclosure header and line; Nostr:
the NIP-32 agent-made label; A2A: the answer's metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Channel = Literal["mail", "nostr", "a2a"]

# The disclosure every agent-written message carries (mail: this header and the line below
# the text; see agent.incoming's module docstring for the other channels).
DISCLOSURE_HEADER = "X-Flurry-Agent"
DISCLOSURE_LINE = "— Written by {owner}'s personal AI agent (flurry), not by {owner} in person."


@dataclass(frozen=True)
class Incoming:
    channel: Channel
    id: str  # unique within the channel: a mail's Message-ID (or a digest), a rumor id, a task id
    sender: str  # a mail address (lower-cased), a Nostr public key (hex), or a DID
    text: str  # the body as plain text (HTML already reduced to text), bounded by the channel
    subject: str = ""
    peer_did: str | None = None  # set only when a signature proved who sent it
    authenticated: bool = False  # mail: the channel verified the sender (e.g. DKIM); else False
    # Lower-cased header names → values, as the channel read them (mail: Auto-Submitted,
    # Precedence, List-Id, List-Unsubscribe, Reply-To, Message-ID, In-Reply-To, References, …).
    headers: dict[str, str] = field(default_factory=dict)
    received_at: float = 0.0
    reply_to: str | None = None  # the id of our message this one answers, if any


@dataclass(frozen=True)
class Outgoing:
    channel: Channel
    to: str  # always the Incoming's sender (mail address, Nostr key hex, or DID)
    text: str  # the reply's text, disclosure line included for mail
    subject: str = ""
    in_reply_to: str | None = None  # mail: the Message-ID answered; Nostr: the rumor id
    references: tuple[str, ...] = ()  # mail: the thread's Message-IDs, oldest first
    agent_made: bool = True
