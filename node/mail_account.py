"""The owner's mail account: kept sealed in the vault, its new mail fetched over IMAP (IDLE
where the server offers it, polling otherwise), ingested like `flurry add` ingests a .eml
(tag "mail") and handed on as an ``agent.incoming.Incoming``.

What is kept where: the whole account, password included, is a sealed vault record (kind
``mail-account``); nothing of it is in the config file or the log. Per account a sealed
watermark (``mail-state``: the folder's UIDVALIDITY and the last UID stored) and per message
a sealed "seen" record keyed by Message-ID (``mail-seen``), so a message delivered twice, or
found again after the server changed its UIDVALIDITY, is stored and handed on once.

A stranger's mail is read within limits before it is trusted: its size is asked first
(RFC822.SIZE) and a message over the account's limit is stored with its headers only, said
so in its text; the header block read here is bounded; the body is parsed by the same parser
as `flurry add`, in a worker process within its budget (store.ingest); every header value
handed on is unfolded (no CR/LF) and bounded; the text is bounded.

Nothing is lost when the node stops mid-fetch: a message's document is committed first,
then the callback is called, then the seen record and the watermark move, in one
transaction. A stop in between fetches the message again at the next start; it is then
"unchanged" in the vault and handed on again (at least once: ``Incoming.id`` is the
Message-ID, for the receiver to recognise it).

Plain-text IMAP and SMTP (no TLS) are refused except to a loopback address (the tests'
servers): a password must not cross a network in clear.
"""

from __future__ import annotations

import hashlib
import imaplib
import io
import logging
import queue
import re
import select
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any, Protocol

from agent.incoming import Incoming
from agent.model_sources import is_loopback
from node import logs
from node.errors import NodeError
from store.ingest import AddReport, Ingestor
from store.parsers import Record, Skip
from store.parsers.registry import EMAIL

if TYPE_CHECKING:  # annotations only
    from agent.embedding import Embedder
    from store.retrieval import SearchIndexes
    from store.vault import Vault


class Node(Protocol):
    """The node as the mail account uses it (node.node.Node is one). A protocol rather than an
    import: node.node holds the inbox agent, which sends through this module's account."""

    vault: Vault
    indexes: SearchIndexes

    @property
    def embedder(self) -> Embedder: ...


ACCOUNTS = "mail-account"  # vault records: account name → the account (password included)
STATE = "mail-state"  # account name → {"uidvalidity": int, "last_uid": int}
SEEN = "mail-seen"  # Message-ID → {"account", "uid", "at", "oversized"}
SENT = "mail-sent"  # Message-ID of a reply the agent sent → {"to", "at"} (node.mail_send)
TAG = "mail"

TLS_MODES: tuple[str, ...] = ("starttls", "tls", "none-loopback-only")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_HEADER_BYTES = 128 * 1024  # the header block read here; more is cut
MAX_HEADER_VALUE = 2000  # characters of one header value handed on
MAX_SUBJECT = 500
MAX_TEXT = 20_000  # characters of a message's text handed on
BATCH = 200  # messages per fetch round
IDLE_RENEW_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE at least every 29 minutes
TIMEOUT = 30.0

# Headers handed on in ``Incoming.headers`` (lower-cased): what the policy and loop guard read.
HANDED_HEADERS = (
    "from",
    "to",
    "cc",
    "date",
    "subject",
    "message-id",
    "in-reply-to",
    "references",
    "reply-to",
    "return-path",
    "auto-submitted",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "x-auto-response-suppress",
    "x-autoreply",
    "x-flurry-agent",
)
_MSG_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")


class MailError(NodeError):
    """A mail account could not be used (refused login, refused transport, server error)."""


@dataclass(frozen=True)
class MailAccount:
    name: str  # the address, unless the owner names it otherwise
    imap_host: str
    imap_port: int
    user: str
    password: str = field(repr=False)
    address: str  # the owner's address: the From of every reply
    smtp_host: str = ""
    smtp_port: int = 587
    tls: str = "starttls"
    folder: str = "INBOX"
    poll_seconds: float = 300.0
    max_bytes: int = DEFAULT_MAX_BYTES
    owner_name: str = ""  # in the disclosure line: "Written by {owner_name}'s personal AI agent"
    # An IMAP date ("01-Dec-2026"): mail that arrived before it is never read, not even when
    # the server renumbers the folder (a new UIDVALIDITY). Set to the day the account is added,
    # unless the owner asks for the mail already there.
    since: str = ""

    @classmethod
    def from_record(cls, value: dict[str, Any]) -> MailAccount:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in value.items() if k in known})


def check_transport(host: str, tls: str, what: str) -> None:
    if tls not in TLS_MODES:
        raise MailError(f"unknown --tls {tls!r}: use starttls, tls or none-loopback-only")
    if tls == "none-loopback-only" and not is_loopback(host):
        raise MailError(
            f"refusing a plain-text {what} connection to {host}: without TLS the password and "
            "the mail would cross the network in clear. Plain text is allowed only to a "
            "loopback address (127.0.0.1, ::1, localhost); use --tls starttls or --tls tls."
        )


def tls_context() -> ssl.SSLContext:
    """Certificates checked against the system's CAs (or SSL_CERT_FILE), host names too."""
    return ssl.create_default_context()


# --- the account in the vault -------------------------------------------------------------------


def save_account(node: Node, account: MailAccount) -> None:
    node.vault.put_record(ACCOUNTS, account.name, asdict(account))


def list_accounts(node: Node) -> list[MailAccount]:
    return [MailAccount.from_record(value) for _, value in node.vault.records(ACCOUNTS)]


def get_account(node: Node, name: str | None = None) -> MailAccount:
    accounts = list_accounts(node)
    if not accounts:
        raise MailError("no mail account: add one with flurry mail add")
    if name is None:
        if len(accounts) > 1:
            raise MailError("several mail accounts: name one (flurry mail list)")
        return accounts[0]
    for account in accounts:
        if account.name == name:
            return account
    raise MailError(f"no mail account named {name!r} (flurry mail list)")


def start_from_now(
    node: Node, account: MailAccount, imap: imaplib.IMAP4
) -> tuple[MailAccount, int]:
    """Save ``account`` with its watermark at the folder's last message, so that only mail
    arriving from now on is fetched (and handed to the agent, which must not answer last
    year's mail); (the account as saved, how many messages were left as they are)."""
    uidvalidity, _ = select_folder(imap, account.folder)
    before = node.vault.get_record(STATE, account.name) or {}
    if before.get("uidvalidity") == uidvalidity:  # added again (a new password): keep its place
        last = int(before.get("last_uid", 0))
    else:
        last = max(new_uids(imap, 0), default=0)
    there = [uid for uid in new_uids(imap, 0) if uid <= last]
    previous = node.vault.get_record(ACCOUNTS, account.name) or {}
    # A day early: SINCE compares dates in the server's time zone, which may be behind UTC.
    since = previous.get("since") or imap_date(time.time() - 86400)
    account = MailAccount.from_record({**asdict(account), "since": since})
    node.vault.write_records(
        [
            (ACCOUNTS, account.name, asdict(account)),
            (STATE, account.name, {"uidvalidity": uidvalidity, "last_uid": last}),
        ]
    )
    return account, len(there)


def remove_account(node: Node, name: str) -> bool:
    """Forget the account, its password and its watermark (the mail already stored stays)."""
    get_account(node, name)
    node.vault.write_records([], deletes=[(ACCOUNTS, name), (STATE, name)])
    return True


# --- IMAP ---------------------------------------------------------------------------------------


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@contextmanager
def imap_session(account: MailAccount, timeout: float = TIMEOUT) -> Iterator[imaplib.IMAP4]:
    """A logged-in IMAP connection, over TLS unless the server is on loopback and the account
    says none-loopback-only; a refused login is a MailError that says so."""
    check_transport(account.imap_host, account.tls, "IMAP")
    try:
        if account.tls == "tls":
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                account.imap_host, account.imap_port, ssl_context=tls_context(), timeout=timeout
            )
        else:
            imap = imaplib.IMAP4(account.imap_host, account.imap_port, timeout=timeout)
            if account.tls == "starttls":
                imap.starttls(tls_context())
    except (OSError, imaplib.IMAP4.error) as e:
        raise MailError(
            f"cannot reach the IMAP server {account.imap_host}:{account.imap_port}: {e}"
        ) from None
    try:
        try:
            imap.login(account.user, account.password)
        except imaplib.IMAP4.error as e:
            raise MailError(
                f"the IMAP server {account.imap_host} refused the login of {account.user}: "
                f"{_text(e)[:200]} (check the user and the password or app password)"
            ) from None
        yield imap
    finally:
        with suppress(OSError, imaplib.IMAP4.error):
            imap.logout()


def _quote(folder: str) -> str:
    if any(c in folder for c in "\r\n\x00"):
        raise MailError("a folder name cannot hold a line break")
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ok(typ: str, data: list, what: str) -> list:
    if typ != "OK":
        raise MailError(f"the IMAP server refused {what}: {_text(data[0] if data else '')[:200]}")
    return data


def select_folder(imap: imaplib.IMAP4, folder: str) -> tuple[int, int]:
    """Select ``folder`` read-only; (UIDVALIDITY, number of messages)."""
    typ, data = imap.select(_quote(folder), readonly=True)
    _ok(typ, data, f"to open the folder {folder!r}")
    exists = int(data[0] or 0)
    _, validity = imap.response("UIDVALIDITY")
    try:
        uidvalidity = int(validity[0])
    except (TypeError, ValueError, IndexError):
        raise MailError(f"the IMAP server gave no UIDVALIDITY for {folder!r}") from None
    return uidvalidity, exists


_SIZE = re.compile(rb"UID (\d+)[^)]*?RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+)[^)]*?UID (\d+)")


def _sizes(imap: imaplib.IMAP4, uids: list[int]) -> dict[int, int]:
    typ, data = imap.uid("FETCH", ",".join(map(str, uids)), "(RFC822.SIZE)")
    _ok(typ, data, "to tell the messages' sizes")
    sizes: dict[int, int] = {}
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        m = _SIZE.search(line)
        if m:
            uid, size = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            sizes[int(uid)] = int(size)
    return sizes


def _fetch_part(imap: imaplib.IMAP4, uid: int, part: str) -> bytes | None:
    typ, data = imap.uid("FETCH", str(uid), f"({part})")
    _ok(typ, data, f"to fetch message {uid}")
    for item in data:
        if isinstance(item, tuple) and isinstance(item[1], bytes):
            return item[1]
    return None  # expunged meanwhile


_IMAP_DATE = re.compile(r"\d{1,2}-[A-Z][a-z]{2}-\d{4}")


def imap_date(when: float) -> str:
    """``when`` as an IMAP date (RFC 3501 date: 1-Dec-2026), in English whatever the locale."""
    t = time.gmtime(when)
    months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
    return f"{t.tm_mday}-{months[t.tm_mon - 1]}-{t.tm_year}"


def new_uids(imap: imaplib.IMAP4, last_uid: int, since: str = "") -> list[int]:
    criteria = f"UID {last_uid + 1}:*"
    if since:
        if not _IMAP_DATE.fullmatch(since):
            raise MailError(f"the account's 'since' {since!r} is not an IMAP date")
        criteria += f" SINCE {since}"
    typ, data = imap.uid("SEARCH", criteria)
    _ok(typ, data, "to search for new mail")
    found = {int(x) for x in (data[0] or b"").split() if x.isdigit()}
    # "n:*" names the last message even when its UID is below n (RFC 3501 §6.4.8)
    return sorted(uid for uid in found if uid > last_uid)


# --- a message's headers, within limits ---------------------------------------------------------


def header_block(raw: bytes) -> bytes:
    """The header block of ``raw`` (up to the first blank line), cut at MAX_HEADER_BYTES."""
    head = raw[: MAX_HEADER_BYTES + 4]
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    end = min(ends) if ends else len(head)
    return head[: min(end, MAX_HEADER_BYTES)]


def _one_line(value: str, limit: int) -> str:
    return " ".join(value.replace("\x00", " ").split())[:limit]


def read_headers(raw: bytes) -> dict[str, str]:
    """The handed-on headers of ``raw``: lower-cased names, unfolded, decoded where the
    encoding is sound (raw text otherwise), bounded; the first of a repeated header."""
    block = header_block(raw) + b"\r\n\r\n"
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(block)
    raw_parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
    found: dict[str, str] = {}
    for name in HANDED_HEADERS:
        try:
            value = parsed.get(name)
            text = None if value is None else str(value)
        except Exception:  # a broken encoded word: the raw text, undecoded
            raw_value = raw_parsed.get(name)
            text = None if raw_value is None else str(raw_value)
        if text is not None:
            found[name] = _one_line(text, MAX_HEADER_VALUE)
    return found


def sender_of(headers: dict[str, str]) -> str:
    """The From address, lower-cased; "" when there is none or it is not one address."""
    addresses = [a for _, a in getaddresses([headers.get("from", "")]) if a]
    if len(addresses) != 1:
        return ""
    address = addresses[0].strip().lower()
    return address if re.fullmatch(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+", address) else ""


def message_id_of(headers: dict[str, str], raw: bytes) -> str:
    """The message's Message-ID, or a digest of its bytes when it has no sound one."""
    m = _MSG_ID.search(headers.get("message-id", ""))
    if m:
        return m.group(0)
    return f"<sha256-{hashlib.sha256(raw).hexdigest()[:40]}@flurry.invalid>"


def _shown(account: MailAccount, uid: int, subject: str) -> str:
    clean = "".join(c if c.isprintable() and c not in "/\\" else " " for c in subject)
    clean = " ".join(clean.split())[:80] or "(no subject)"
    return f"mail/{account.name}/{time.strftime('%Y-%m-%d')} {uid} {clean}"


# --- fetching -----------------------------------------------------------------------------------

OnMessage = Callable[[Incoming], object]  # what it returns (the inbox item) is not read
RunModelWork = Callable[[Callable[[], Any]], Any]


@dataclass
class FetchReport:
    fetched: int = 0  # messages stored and handed on
    duplicates: int = 0  # Message-IDs already seen
    oversized: int = 0  # stored with their headers only
    unreadable: int = 0  # bodies the parser could not read (stored with their headers)
    reset: bool = False  # the folder's UIDVALIDITY changed: read again from the start


@dataclass
class _Fetched:
    """One message fetched and parsed ahead of its storing (by the helper thread)."""

    uid: int
    raw: bytes | None  # None: expunged before it was fetched
    oversized: bool
    headers: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    subject: str = ""
    shown: str = ""
    content: bytes = b""
    note: str = ""
    parsed: list[Record] | Skip | None = None


def _outcome(report: AddReport, records: list[Record]) -> tuple[str, str]:
    if report.skipped:
        return "", report.skipped[0].reason
    if records and records[0].sections:
        return records[0].sections[0].text, ""
    return "", ""  # unchanged: stored before a stop; its text is not read again


class MailFetcher:
    """Fetches one account's new mail into the node. ``on_message`` gets each new message's
    ``Incoming`` after it is stored; ``run_model_work`` runs the ingest (which embeds) where
    model work runs (the server's model queue; default: here, at once)."""

    def __init__(
        self,
        node: Node,
        account: MailAccount,
        on_message: OnMessage | None = None,
        *,
        run_model_work: RunModelWork | None = None,
        parse_workers: int = 1,
    ) -> None:
        self.node = node
        self.account = account
        self.on_message = on_message
        self._run: RunModelWork = run_model_work or (lambda call: call())
        self._parse_workers = parse_workers
        self._ingestor: Ingestor | None = None

    def state(self) -> tuple[int | None, int]:
        value = self.node.vault.get_record(STATE, self.account.name) or {}
        return value.get("uidvalidity"), int(value.get("last_uid", 0))

    def count_new(self) -> int:
        """How many messages wait to be fetched (`flurry mail check`)."""
        with imap_session(self.account) as imap:
            uidvalidity, _ = select_folder(imap, self.account.folder)
            known, last = self.state()
            return len(new_uids(imap, 0 if known != uidvalidity else last, self.account.since))

    def fetch(self) -> FetchReport:
        """One round: connect, fetch everything new, disconnect."""
        with imap_session(self.account) as imap:
            return self.fetch_new(imap)

    def fetch_new(self, imap: imaplib.IMAP4) -> FetchReport:
        try:
            return self._fetch_new(imap)
        finally:
            if self._ingestor is not None:
                ingestor, self._ingestor = self._ingestor, None
                self._run(ingestor.flush)

    def _fetch_new(self, imap: imaplib.IMAP4) -> FetchReport:
        report = FetchReport()
        uidvalidity, _ = select_folder(imap, self.account.folder)
        known, last = self.state()
        if known != uidvalidity:
            # A new UIDVALIDITY: the old UIDs mean nothing now. Read the folder again from
            # the start; the seen records (by Message-ID) keep what was stored from coming twice.
            report.reset = known is not None
            last = 0
            self.node.vault.put_record(
                STATE, self.account.name, {"uidvalidity": uidvalidity, "last_uid": 0}
            )
        while True:
            uids = new_uids(imap, last, self.account.since)[:BATCH]
            if not uids:
                return report
            if self._ingestor is None:  # one per round: the indexes get their chunks in batches
                self._ingestor = self._run(self._new_ingestor)
            sizes = _sizes(imap, uids)
            # The next message is fetched and parsed (in a parser process) by a helper thread
            # while this one's chunks are embedded; each is stored, handed on and put behind
            # the watermark here, in UID order.
            ahead: queue.Queue[_Fetched | BaseException] = queue.Queue(maxsize=2)
            stop = threading.Event()
            helper = threading.Thread(
                target=self._prefetch,
                args=(imap, uids, sizes, ahead, stop),
                name="mail-prefetch",
                daemon=True,
            )
            helper.start()
            try:
                for _ in uids:
                    item = ahead.get()
                    if isinstance(item, BaseException):
                        raise item
                    self._complete(item, uidvalidity, report)
                    last = item.uid
            finally:
                stop.set()
                helper.join()

    def _new_ingestor(self) -> Ingestor:
        return Ingestor(
            self.node.vault,
            self.node.indexes,
            self.node.embedder.embed,
            tags=(TAG,),
            parse_workers=self._parse_workers,
        )

    def _prefetch(
        self,
        imap: imaplib.IMAP4,
        uids: list[int],
        sizes: dict[int, int],
        ahead: queue.Queue[_Fetched | BaseException],
        stop: threading.Event,
    ) -> None:
        for uid in uids:
            if stop.is_set():
                return
            item: _Fetched | BaseException
            try:
                item = self._fetch_one(imap, uid, sizes.get(uid))
            except BaseException as e:  # raised where the messages are taken
                item = e
            while not stop.is_set():
                try:
                    ahead.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def _fetch_one(self, imap: imaplib.IMAP4, uid: int, size: int | None) -> _Fetched:
        limit = self.account.max_bytes
        oversized = size is None or size > limit
        if oversized:  # the size first: an oversized body is never downloaded
            raw = _fetch_part(imap, uid, f"BODY.PEEK[HEADER]<0.{MAX_HEADER_BYTES}>")
        else:
            raw = _fetch_part(imap, uid, "BODY.PEEK[]")
        if raw is not None and not oversized and len(raw) > limit:
            oversized, raw = True, header_block(raw)  # the server said less than it sent
        item = _Fetched(uid, raw, oversized)
        if raw is None:  # gone from the server meanwhile: nothing to store
            return item
        item.headers = read_headers(raw)
        item.message_id = message_id_of(item.headers, raw)
        if oversized:
            item.note = (
                f"(This message is {size if size is not None else 'of unknown size'} bytes, over "
                f"the limit of {limit} bytes: only its headers were fetched; read it in your "
                "mail program.)"
            )
            item.content = header_block(raw) + b"\r\n\r\n" + item.note.encode() + b"\r\n"
        else:
            item.content = raw
        item.subject = _one_line(item.headers.get("subject", ""), MAX_SUBJECT)
        item.shown = _shown(self.account, uid, item.subject)
        # Parsed even if its Message-ID turns out to be seen: this thread keeps off the vault
        # (whose connections are per thread, and this thread is new every round).
        assert self._ingestor is not None
        item.parsed = self._ingestor.parse_content(item.shown, item.content, EMAIL)
        return item

    def _complete(self, item: _Fetched, uidvalidity: int, report: FetchReport) -> None:
        if item.raw is None:
            self._advance(uidvalidity, item.uid, None)
            return
        message_id = item.message_id
        if item.parsed is None or self.node.vault.get_record(SEEN, message_id) is not None:
            report.duplicates += 1  # seen before, or earlier in this round
            self._advance(uidvalidity, item.uid, None)
            return
        key = f"mail:{self.account.name}:{message_id}"
        parsed = item.parsed
        text, skipped = self._run(lambda: self._store(item.shown, key, item.content, parsed))
        note = item.note
        if item.oversized:
            report.oversized += 1
        if skipped:  # the parser could not read the body: keep the headers and say why
            report.unreadable += 1
            note = f"(The body of this message could not be read: {skipped}.)"
            content = header_block(item.raw) + b"\r\n\r\n" + note.encode() + b"\r\n"
            text, again = self._run(lambda: self._ingest(item.shown, key, content))
            if again:  # not even the headers: the note alone
                text = note
        if note and note not in text:
            text = f"{text}\n\n{note}".strip()
        incoming = Incoming(
            channel="mail",
            id=message_id,
            sender=sender_of(item.headers),
            text=text[:MAX_TEXT],
            subject=item.subject,
            headers=item.headers,
            received_at=time.time(),
            reply_to=self._answers(item.headers),
        )
        if self.on_message is not None:
            try:
                self.on_message(incoming)
            except Exception as e:  # it is stored; one failing handler must not stop the rest
                logs.event(  # its type only: an exception's message may quote the mail
                    "mail",
                    f"mail: the inbox agent failed on a message ({type(e).__name__}); it is stored",
                    logging.ERROR,
                    account=self.account.name,
                )
        self._advance(
            uidvalidity,
            item.uid,
            (
                message_id,
                {"account": self.account.name, "uid": item.uid, "oversized": item.oversized},
            ),
        )
        report.fetched += 1

    def _store(
        self, shown: str, key: str, content: bytes, parsed: list[Record] | Skip
    ) -> tuple[str, str]:
        """Store what was parsed like `flurry add` stores a .eml; (its text, the skip reason or "")."""
        assert self._ingestor is not None
        report, records = self._ingestor.store_parsed(shown, key, content, parsed)
        return _outcome(report, records)

    def _ingest(self, shown: str, key: str, content: bytes) -> tuple[str, str]:
        """Parse and store ``content``; (its text, the skip reason or "")."""
        assert self._ingestor is not None
        report, records = self._ingestor.add_content(shown, key, content, EMAIL)
        return _outcome(report, records)

    def _answers(self, headers: dict[str, str]) -> str | None:
        """The Message-ID of our own reply this message answers, if it answers one."""
        ids = _MSG_ID.findall(headers.get("in-reply-to", "") + " " + headers.get("references", ""))
        for message_id in reversed(ids):
            if self.node.vault.get_record(SENT, message_id) is not None:
                return message_id
        return None

    def _advance(self, uidvalidity: int, uid: int, seen: tuple[str, dict[str, Any]] | None) -> None:
        puts: list[tuple[str, str, dict[str, Any]]] = [
            (STATE, self.account.name, {"uidvalidity": uidvalidity, "last_uid": uid})
        ]
        if seen is not None:
            puts.append((SEEN, seen[0], {**seen[1], "at": time.time()}))
        self.node.vault.write_records(puts)


# --- IDLE (RFC 2177) on imaplib, which has none before Python 3.14 ------------------------------


def supports_idle(imap: imaplib.IMAP4) -> bool:
    typ, data = imap.capability()
    return typ == "OK" and b"IDLE" in (data[0] or b"").upper().split()


def _peek(imap: imaplib.IMAP4) -> bytes | None:
    """What can be read without waiting: imaplib's buffer first (select cannot see it: a
    change sent with IDLE's "+" arrives in the same read), then TLS's and the socket's. The
    socket is non-blocking for the moment, so this never waits. b"": nothing now, or the end
    (tell them apart with select); None: TLS needs more bytes for a whole record."""
    sock, file = imap.sock, imap.file
    assert isinstance(file, io.BufferedReader)  # imaplib reads through sock.makefile("rb")
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return file.peek(1)
    except (BlockingIOError, ssl.SSLWantReadError):
        return None
    finally:
        sock.settimeout(timeout)


def idle_wait(imap: imaplib.IMAP4, seconds: float, stop: threading.Event) -> bool:
    """Wait in IDLE until the server reports a change, ``seconds`` pass or ``stop`` is set;
    whether something changed. The connection is back in the selected state on return."""
    tag = imap._new_tag()  # imaplib's own tags, so replies match
    imap.send(tag + b" IDLE\r\n")
    line = imap.readline()
    if not line.startswith(b"+"):
        raise MailError(f"the IMAP server refused IDLE: {_text(line)[:200]}")
    changed = False
    deadline = time.monotonic() + seconds
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if not _peek(imap):
                ready, _, _ = select.select([imap.sock], [], [], 0.2)
                if not ready or _peek(imap) is None:
                    continue
            line = imap.readline()  # a whole line is there, or the end (b"")
            if not line:
                raise MailError("the IMAP server closed the connection")
            if re.match(rb"\* \d+ (EXISTS|RECENT)", line):
                changed = True
                break
    finally:
        imap.send(b"DONE\r\n")
        while True:  # the untagged lines still coming, then IDLE's own ending
            line = imap.readline()
            if not line:
                raise MailError("the IMAP server closed the connection")
            if line.startswith(tag):
                break
            if re.match(rb"\* \d+ (EXISTS|RECENT)", line):
                changed = True
    return changed


# --- the watcher: `flurry serve`'s background task ---------------------------------------------


class MailWatcher:
    """Keeps every account's mail fetched while the server runs: one thread per account,
    IDLE where the server offers it (unless ``use_idle`` is False), polling every
    ``poll_seconds`` of the account otherwise; after an error it waits and connects again.
    ``stop()`` ends the threads within a second or so (a fetch in progress finishes its
    message first)."""

    def __init__(
        self,
        node: Node,
        on_message: OnMessage | None = None,
        *,
        run_model_work: RunModelWork | None = None,
        use_idle: bool = True,
        retry_seconds: float = 30.0,
    ) -> None:
        self.node = node
        self.on_message = on_message
        self._run = run_model_work
        self._run_here: RunModelWork = run_model_work or (lambda call: call())
        self._use_idle = use_idle
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.rounds = 0  # fetch rounds done, all accounts together
        self.mode: dict[str, str] = {}  # account → "idle" or "poll"
        self.errors: dict[str, str] = {}  # account → the last error

    def start(self) -> int:
        """Start a thread per account; how many accounts are watched."""
        accounts = list_accounts(self.node)
        self._stop.clear()
        for account in accounts:
            thread = threading.Thread(
                target=self._watch, args=(account,), name=f"mail-{account.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return len(accounts)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT)
        self._threads = []

    def _watch(self, account: MailAccount) -> None:
        fetcher = MailFetcher(self.node, account, self.on_message, run_model_work=self._run)
        while not self._stop.is_set():
            try:
                with imap_session(account) as imap:
                    idle = self._use_idle and supports_idle(imap)
                    self.mode[account.name] = "idle" if idle else "poll"
                    while not self._stop.is_set():
                        # Again until a round finds nothing: mail that arrived while the last
                        # one was handed on (the agent may take seconds a message) was never
                        # announced on this connection, and IDLE reports only what comes after.
                        while self._round(fetcher, imap) and not self._stop.is_set():
                            pass
                        if idle:
                            idle_wait(imap, IDLE_RENEW_SECONDS, self._stop)
                        else:
                            self._stop.wait(account.poll_seconds)
                            imap.noop()
            except Exception as e:  # a server gone, a refused login: said, then tried again
                self.errors[account.name] = str(e)[:300]
                logs.event(
                    "mail",
                    f"mail: the account {account.name} failed ({type(e).__name__}); retrying",
                    logging.WARNING,
                    account=account.name,
                )
                self._stop.wait(self._retry)

    def _round(self, fetcher: MailFetcher, imap: imaplib.IMAP4) -> int:
        """Fetch what is new; how many messages it fetched."""
        report = fetcher.fetch_new(imap)
        self.rounds += 1
        if report.fetched:
            self._run_here(self.node.indexes.save)
            logs.event(
                "mail",
                f"mail: {report.fetched} new message(s) for {fetcher.account.name}",
                fetched=report.fetched,
                account=fetcher.account.name,
            )
        return report.fetched
