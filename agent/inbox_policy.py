"""The owner's inbox policy in code: which rule applies to a message, and what the agent may do.

Everything here decides from what a channel proved or read of the envelope (the sender, the
peer's DID when a signature proved it, the channel, the headers), never from a message's text:
a message cannot talk its way into a reply. The text can only lower the action: a message
that asks for more than an answer (to forward, copy in or write to another address, to reveal
passwords or other notes, to change the rules, to drop the instructions) gets a draft, never
an automatic reply, however it is worded. That check is defence in depth, not the defence: a
message that slips past it still gets only a reply to its sender, from the rule's tags. Pure code, no I/O: the inbox agent
(node.inbox_agent) hands in the message, the owner's rules and what it remembers of the
sender, and gets back a `Decision`.

Rules match one of four things, the most specific first:

1. ``did``    a peer's DID, only when the channel proved it by a signature;
2. ``sender`` the exact sender (a mail address, a Nostr key in hex, a DID as A2A names it);
3. ``domain`` the sender's mail domain, subdomains included;
4. ``label``  a label of the message: its channel ("mail", "nostr", "a2a"), "peer" (a DID
   was proved) or "stranger", "authenticated" (the mail channel verified the sender).

Within one kind the rule added first wins. No rule: the default, a draft for the owner.

Actions, weakest first: ``ignore`` (kept, not read by the model), ``summarise`` (the owner
gets a one-line summary), ``draft`` (a reply for the owner to approve), ``auto-reply`` (sent
at once, drawn only from the rule's tags, to the sender only, at most ``per_day`` a day).

Guards no rule can lift; each caps the action, never raises it:

- never any reply (``ignore``; ``summarise`` where the owner's rule asks exactly that): mail marked ``Auto-Submitted`` other than "no"
  (RFC 3834: vacation notices, other agents), ``Precedence: bulk|list|junk``, ``List-Id`` or
  ``List-Unsubscribe`` (lists), an empty ``Return-Path`` (bounces), a no-reply, mailer-daemon
  or postmaster sender, an empty or malformed sender;
- never an automatic reply (``draft`` at most): a ``Reply-To`` other than the sender (a reply
  goes to the sender only, so the owner decides), a message that is itself agent-made
  (``X-Flurry-Agent``, and the Nostr agent-made label, which the Nostr channel turns into that
  header), a sender the agent already auto-replied to with no message from the owner since
  (the loop guard), a sender who had ``per_day`` automatic replies in the last 24 hours, and a
  message whose subject or text asks for more than an answer (`asks_for_more`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Literal, get_args

from agent.incoming import DISCLOSURE_HEADER, Incoming

Action = Literal["ignore", "summarise", "draft", "auto-reply"]
ACTIONS: tuple[Action, ...] = get_args(Action)  # weakest first: a guard caps, never raises
Match = Literal["did", "sender", "domain", "label"]
MATCHES: tuple[Match, ...] = get_args(Match)  # most specific first
DEFAULT_ACTION: Action = "draft"
DEFAULT_PER_DAY = 3
MAX_PER_DAY = 100
MAX_RULES = 500
MAX_TAGS = 32
DAY = 24 * 3600

AGENT_HEADER = DISCLOSURE_HEADER.lower()  # as Incoming.headers names it
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,63}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_NOSTR_KEY = re.compile(r"^[0-9a-f]{64}$")
_DID = re.compile(r"^did:[a-z0-9]+:[A-Za-z0-9._:%-]{1,512}$")
# Senders a reply must never go to: the machinery of mail, and those who said "do not reply".
_NO_REPLY_LOCAL = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon|postmaster|bounces?)([-+_.].*)?$"
)


class PolicyError(ValueError):
    """A rule the policy cannot hold; the message says what is wrong with it."""


@dataclass(frozen=True)
class Rule:
    """One of the owner's rules. ``tags`` are the vault tags its replies may draw on (a draft's
    or an auto-reply's; nothing else is ever searched), ``per_day`` the most automatic replies
    one sender gets in 24 hours."""

    match: Match
    value: str
    action: Action
    tags: frozenset[str] = frozenset()
    per_day: int = DEFAULT_PER_DAY
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    added_at: float = 0.0

    def to_record(self) -> dict:
        return {
            "id": self.id,
            "match": self.match,
            "value": self.value,
            "action": self.action,
            "tags": sorted(self.tags),
            "per_day": self.per_day,
            "added_at": self.added_at,
        }

    @classmethod
    def from_record(cls, record: dict) -> Rule:
        return make_rule(
            str(record.get("match", "")),
            str(record.get("value", "")),
            str(record.get("action", "")),
            tags=[str(t) for t in record.get("tags") or ()],
            per_day=record.get("per_day", DEFAULT_PER_DAY),
            rule_id=str(record.get("id") or secrets.token_hex(4)),
            added_at=float(record.get("added_at") or 0.0),
        )


def make_rule(
    match: str,
    value: str,
    action: str,
    *,
    tags: list[str] | tuple[str, ...] = (),
    per_day: object = DEFAULT_PER_DAY,
    rule_id: str | None = None,
    added_at: float = 0.0,
) -> Rule:
    """A checked rule; PolicyError says what is wrong (a value that can never match, an
    auto-reply with nothing to draw on, a daily limit out of range)."""
    if match not in MATCHES:
        raise PolicyError(f"a rule matches one of {', '.join(MATCHES)}, not {match!r}")
    if action not in ACTIONS:
        raise PolicyError(f"a rule's action is one of {', '.join(ACTIONS)}, not {action!r}")
    value = value.strip()
    if match == "sender":
        value = normal_sender(value)
    elif match != "did":
        value = value.lower()
    if match == "domain":
        value = value.lstrip("@")
    checks = {
        "did": _DID.match(value),
        "sender": valid_sender(value),
        "domain": _DOMAIN.match(value),
        "label": _LABEL.match(value),
    }
    if not checks[match]:
        raise PolicyError(f"{value!r} is not a {match} a rule can match")
    tag_set = frozenset(t.strip() for t in tags if t.strip())
    if len(tag_set) > MAX_TAGS or any(not _TAG.match(t) for t in tag_set):
        raise PolicyError(f"tags are at most {MAX_TAGS} words of letters, digits and ._:/-")
    if action == "auto-reply" and not tag_set:
        raise PolicyError(
            "an auto-reply rule needs the tags its answers may draw on (--tag travel …)"
        )
    if isinstance(per_day, bool) or not isinstance(per_day, int) or not 1 <= per_day <= MAX_PER_DAY:
        raise PolicyError(f"--per-day is a whole number from 1 to {MAX_PER_DAY}")
    return Rule(
        match,
        value,
        action,
        tag_set,
        per_day,
        rule_id or secrets.token_hex(4),
        added_at,
    )


# --- what a message is, read from its envelope ---------------------------------------------------


def valid_sender(sender: str) -> bool:
    """A mail address (addr-spec, no display name), a Nostr key in hex, or a DID."""
    if _NOSTR_KEY.match(sender) or _DID.match(sender):
        return True
    if len(sender) > 254 or sender.count("@") != 1:
        return False
    local, domain = sender.split("@")
    return bool(
        _LOCAL.match(local)
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and _DOMAIN.match(domain)
    )


def normal_sender(sender: str) -> str:
    """A sender as rules and the agent's memory name it: a mail address or a Nostr key in
    lower case; a DID as it is (did:key's base58 is case-sensitive)."""
    sender = sender.strip()
    return sender if sender.startswith("did:") else sender.lower()


def domain_of(sender: str) -> str | None:
    return sender.rsplit("@", 1)[1] if sender.count("@") == 1 else None


def labels_of(incoming: Incoming) -> frozenset[str]:
    labels = {incoming.channel, "peer" if incoming.peer_did else "stranger"}
    if incoming.authenticated:
        labels.add("authenticated")
    return frozenset(labels)


def matching_rule(incoming: Incoming, rules: list[Rule]) -> Rule | None:
    """The most specific rule for ``incoming`` (see the module docstring), or None."""
    sender = normal_sender(incoming.sender)
    domain = domain_of(sender)
    labels = labels_of(incoming)

    def hits(rule: Rule) -> bool:
        if rule.match == "did":
            return incoming.peer_did is not None and rule.value == incoming.peer_did
        if rule.match == "sender":
            return rule.value == sender
        if rule.match == "domain":
            return domain is not None and (
                domain == rule.value or domain.endswith("." + rule.value)
            )
        return rule.value in labels

    for kind in MATCHES:
        found = [r for r in rules if r.match == kind and hits(r)]
        if kind == "domain" and found:  # the longest domain is the most specific
            return max(found, key=lambda r: len(r.value))
        if found:
            return found[0]
    return None


def never_reply(incoming: Incoming) -> str | None:
    """Why no reply at all may go to ``incoming`` (automatic mail, lists, bounces, machinery,
    a sender that is no address); None when a reply may be proposed."""
    h = incoming.headers
    sender = normal_sender(incoming.sender)
    if not sender or not valid_sender(sender):
        return "the sender is empty or malformed"
    auto = h.get("auto-submitted")
    if auto is not None and auto.strip().lower().split(";")[0].strip() != "no":
        return f"it is automatic mail (Auto-Submitted: {auto.strip()[:40]})"
    if h.get("precedence", "").strip().lower() in ("bulk", "list", "junk"):
        return f"it is bulk mail (Precedence: {h['precedence'].strip()[:20]})"
    for name in ("list-id", "list-unsubscribe"):
        if name in h:
            return f"it came through a mailing list ({name.title()})"
    if "return-path" in h and h["return-path"].strip() in ("<>", ""):
        return "it is a bounce (empty Return-Path)"
    if incoming.channel == "mail" and _NO_REPLY_LOCAL.match(sender.split("@")[0]):
        return "the sender does not take replies (no-reply, mailer-daemon, postmaster)"
    return None


def never_auto_reply(incoming: Incoming) -> str | None:
    """Why ``incoming`` may get a draft but no automatic reply; None when it may."""
    h = incoming.headers
    if AGENT_HEADER in h:
        return "it was written by an agent (X-Flurry-Agent or the Nostr agent-made label)"
    for name in ("x-autoreply", "x-autorespond"):
        if name in h:
            return f"it is an automatic reply ({name})"
    if "reply-to" in h:
        addresses = [a.lower() for _, a in getaddresses([h["reply-to"]]) if a]
        if addresses != [normal_sender(incoming.sender)]:
            return "its Reply-To is not the sender: a reply goes to the sender only, so the owner decides"
    return None


# What a message asks beyond an answer: only ever a reason to hold the reply for the owner.
_MORE = re.compile(
    r"\b(forward|fwd|bcc|cc|carbon[- ]cop|send (it|this|them|that|everything|all)\b.{0,40}\bto\b"
    r"|reply (to|at) (?!me\b)|write to|e-?mail (it|this|them) to|instead of me"
    r"|passwords?|passphrases?|pin\b|credentials?|api[- ]?keys?|secret|private key|login"
    r"|system prompt|instructions|ignore (all|any|the|your|previous|prior)|disregard|override"
    r"|admin mode|developer mode|you are now|jailbreak"
    r"|(change|update|edit|add|remove|set|disable) (the |your |a |my )?(policy|rules?|per[_ ]day|tags?)"
    r"|new (rule|policy)|every (note|document|file)|all (the |of the )?(notes|documents|files|tags)"
    r"|(vault|other) tags?|tagged|paste the|e-?mail (it|this|them|me)|repeat after"
    r"|summari[sz]e (the|all|every|your|his|her|their)|vault"
    r"|(the|his|her|their|owner'?s|all|every|other|any) (\w+ )?(notes|documents?|files)\b)",
    re.IGNORECASE,
)
_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
MAX_SCANNED = 100_000


def asks_for_more(incoming: Incoming) -> str | None:
    """Why the message's own words keep it from an automatic reply: it names another address,
    or asks to forward, to reveal, or to change the rules. None when it reads as a question."""
    if len(incoming.text) > MAX_SCANNED:
        return f"it is longer than the {MAX_SCANNED} characters the agent reads whole: left for you"
    text = f"{incoming.subject}\n{incoming.text}"
    sender = normal_sender(incoming.sender)
    others = {a.lower() for a in _ADDRESS.findall(text)} - {sender}
    if others:
        return f"it names another address ({sorted(others)[0][:60]}): left for you"
    found = _MORE.search(text)
    if found:
        return f"it asks for more than an answer (“{found.group(0)[:40]}”): left for you"
    return None


# --- the decision -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SenderHistory:
    """What the agent remembers of a sender: when it auto-replied (the last day's), and when
    the owner last wrote to that sender (an approved draft, a message of their own)."""

    auto_replies: tuple[float, ...] = ()
    owner_wrote_at: float = 0.0

    def replies_in_last_day(self, now: float) -> int:
        return sum(1 for at in self.auto_replies if now - at < DAY)

    @property
    def awaiting_owner(self) -> bool:
        """The last thing sent to this sender was an automatic reply (the loop guard)."""
        return bool(self.auto_replies) and max(self.auto_replies) > self.owner_wrote_at


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: Rule | None
    why: tuple[str, ...]  # the rule that applied, then each guard that capped the action
    tags: frozenset[str]  # what a draft or reply may draw on: the rule's tags, nothing else

    @property
    def sends(self) -> bool:
        return self.action == "auto-reply"

    @property
    def reads(self) -> bool:
        """Whether the model reads the text at all (never for an ignored message)."""
        return self.action != "ignore"


def _cap(action: Action, at_most: Action) -> Action:
    return action if ACTIONS.index(action) <= ACTIONS.index(at_most) else at_most


def decide(incoming: Incoming, rules: list[Rule], history: SenderHistory, now: float) -> Decision:
    """The action for ``incoming``: its rule's, capped by every guard that holds."""
    rule = matching_rule(incoming, rules)
    action: Action = rule.action if rule else DEFAULT_ACTION
    why = [
        f"rule {rule.id}: {rule.match} {rule.value} → {rule.action}"
        if rule
        else "no rule: the default is a draft"
    ]
    # Lists, bulk mail, bounces, vacation notices and other agents' mail are left alone: not
    # read by the model at all, unless the owner's own rule asks for summaries of them.
    quiet: Action = "summarise" if rule is not None and rule.action == "summarise" else "ignore"
    caps: list[tuple[str | None, Action]] = [(never_reply(incoming), quiet)]
    if action == "auto-reply":
        caps.append((never_auto_reply(incoming), "draft"))
        caps.append((asks_for_more(incoming), "draft"))
        if history.awaiting_owner:
            caps.append(
                (
                    "loop guard: the agent already auto-replied to this sender, and you have not written since",
                    "draft",
                )
            )
        assert rule is not None  # the default never auto-replies
        if history.replies_in_last_day(now) >= rule.per_day:
            caps.append(
                (f"{rule.per_day} automatic replies to this sender in 24 hours already", "draft")
            )
    for reason, at_most in caps:
        if reason is not None and ACTIONS.index(action) > ACTIONS.index(at_most):
            action = _cap(action, at_most)
            why.append(reason)
    tags = rule.tags if rule is not None and action in ("draft", "auto-reply") else frozenset()
    return Decision(action, rule, tuple(why), tags)


# --- the question a reply answers ------------------------------------------------------------

MAX_QUESTION = 300
_QUOTE_INTRO = re.compile(r"^on .{0,200} wrote:\s*$", re.IGNORECASE)


def question_of(incoming: Incoming) -> str:
    """What a reply should answer, cut from the message by code: the first question of its own
    text (quoted lines, the quote's "On … wrote:" and the signature left out), else its
    subject, else its first words. Bounded; what it says is still untrusted, and is only ever
    answered from the rule's tags."""
    own: list[str] = []
    for line in incoming.text[:MAX_SCANNED].splitlines():
        stripped = line.strip()
        if stripped in ("--", "-- "):
            break
        if stripped.startswith(">") or _QUOTE_INTRO.match(stripped):
            continue
        if stripped:
            own.append(stripped)
    body = " ".join(own)
    for sentence in re.split(r"(?<=[.!?])\s+", body):
        if sentence.endswith("?") and len(sentence) > 3:
            return sentence[:MAX_QUESTION]
    subject = re.sub(r"^\s*((re|fwd?|aw)\s*:\s*)+", "", incoming.subject, flags=re.IGNORECASE)
    return (subject.strip() or body)[:MAX_QUESTION]
