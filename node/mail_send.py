"""Replies over SMTP: the agent's ``Outgoing`` sent from the owner's account, threaded and
labelled, then filed in the Sent folder.

``SmtpSender.send`` is the mail side of the agent's ``MailSender`` protocol: it returns the
sent Message-ID or raises ``MailError`` with nothing sent. What every reply carries:

- From the account's address, To ``reply.to`` alone (one recipient; never Cc or Bcc: the
  envelope names that one address too);
- Subject "Re: …" (one "Re:", however many the thread had gathered);
- In-Reply-To and References per RFC 5322 §3.6.4 (the parent's references, then the parent);
- a fresh Message-ID on the account's domain;
- ``Auto-Submitted: auto-replied`` (RFC 3834), the disclosure header ``X-Flurry-Agent`` and
  the disclosure line at the end of the text (agent.incoming).

A line break in the subject, the address or a threading id (a header injection) is refused,
as is anything but one plain address in ``to``. Every send is in the node's audit log
(action "mail.send") before it leaves; one that cannot be logged is not sent; one the SMTP
server did not take is followed by "mail.send.failed". After the send
the message is APPENDed to the Sent folder (the one flagged \\Sent, RFC 6154; else "Sent",
created if missing) with \\Seen; a Sent folder that cannot be written is logged, not raised:
the mail has left, and a retry would send it twice.
"""

from __future__ import annotations

import hashlib
import imaplib
import logging
import re
import smtplib
import time
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import TYPE_CHECKING

from agent.incoming import DISCLOSURE_HEADER, DISCLOSURE_LINE, Outgoing
from node import logs
from node.mail_account import (
    SENT,
    TIMEOUT,
    MailAccount,
    MailError,
    _quote,
    check_transport,
    imap_session,
    tls_context,
)

if TYPE_CHECKING:
    from agent.audit import AuditLog
    from store.vault import Vault


_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_MSG_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")  # printable ASCII, no '<', '>' or space
_RE = re.compile(r"^(\s*(re|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.I)
MAX_SUBJECT = 200
MAX_REFERENCES = 20
MAX_TEXT = 100_000
DISCLOSURE_VALUE = "agent-made; written by the owner's personal AI agent (flurry)"


def reply_subject(subject: str) -> str:
    """ "Re: " and the subject without the "Re:"/"AW:" prefixes it gathered."""
    base = _RE.sub("", subject).strip()
    return f"Re: {base}"[:MAX_SUBJECT] if base else "Re:"


def _no_breaks(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\x00") or any(ord(c) < 32 and c != "\t" for c in value):
        raise MailError(
            f"the reply's {what} holds a line break or control character: refused, nothing sent"
        )
    return value


def _msg_id(value: str, what: str) -> str:
    _no_breaks(value, what)
    if not _MSG_ID.fullmatch(value.strip()):
        raise MailError(
            f"the reply's {what} {value[:80]!r} is not a Message-ID: refused, nothing sent"
        )
    return value.strip()


class SmtpSender:
    """Sends the agent's replies from ``account``. ``audit`` records each send before it
    leaves; ``vault`` (optional) keeps the Message-IDs sent, so a reply to one is recognised."""

    def __init__(
        self,
        account: MailAccount,
        audit: AuditLog,
        *,
        vault: Vault | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        if not account.smtp_host:
            raise MailError(
                f"the mail account {account.name} has no SMTP server: add it again with --smtp-host"
            )
        check_transport(account.smtp_host, account.tls, "SMTP")
        self.account = account
        self.audit = audit
        self.vault = vault
        self.timeout = timeout

    def compose(self, reply: Outgoing) -> EmailMessage:
        """The message ``reply`` becomes, checked; MailError when it must not go."""
        if reply.channel != "mail":
            raise MailError(f"a {reply.channel} reply cannot go out by mail")
        if not reply.agent_made:
            raise MailError("only the agent's replies go out this way (agent_made is False)")
        to = _no_breaks(reply.to.strip(), "recipient")
        if not _ADDRESS.fullmatch(to):
            raise MailError(
                f"the reply's recipient {to[:80]!r} is not one plain address: refused, nothing sent"
            )
        subject = reply_subject(_no_breaks(reply.subject, "subject"))
        parent = _msg_id(reply.in_reply_to, "In-Reply-To") if reply.in_reply_to else None
        references = [_msg_id(r, "References") for r in reply.references]
        if parent and parent not in references:
            references.append(parent)
        references = references[-MAX_REFERENCES:]
        owner = self.account.owner_name or self.account.address
        line = DISCLOSURE_LINE.format(owner=owner)
        text = reply.text[:MAX_TEXT].rstrip()
        if line not in text:
            text = f"{text}\n\n{line}"
        domain = self.account.address.rsplit("@", 1)[-1]
        message = EmailMessage()
        message["From"] = formataddr((self.account.owner_name, self.account.address))
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=domain)
        if parent:
            message["In-Reply-To"] = parent
        if references:
            message["References"] = " ".join(references)
        message["Auto-Submitted"] = "auto-replied"
        message[DISCLOSURE_HEADER] = DISCLOSURE_VALUE
        message.set_content(text + "\n")
        return message

    def send(self, reply: Outgoing) -> str:
        message = self.compose(reply)
        message_id = str(message["Message-ID"])
        to = str(message["To"])
        body = message.get_content()
        self.audit.append(
            "mail.send",
            target=to,
            details={
                "account": self.account.name,
                "message_id": message_id,
                "subject": str(message["Subject"]),
                "in_reply_to": reply.in_reply_to or "",
                "text_sha256": hashlib.sha256(body.encode()).hexdigest(),
            },
        )
        try:
            self._smtp(message, to)
        except MailError as e:  # the log says it did not leave, as well as that it was tried
            self.audit.append(
                "mail.send.failed",
                target=to,
                details={"account": self.account.name, "message_id": message_id, "error": str(e)},
            )
            raise
        if self.vault is not None:
            self.vault.put_record(SENT, message_id, {"to": to, "at": time.time()})
        try:
            self.file_in_sent(message)
        except (MailError, OSError, imaplib.IMAP4.error) as e:
            logs.event(
                "mail",
                f"mail: the reply was sent but not filed in the Sent folder ({type(e).__name__})",
                logging.WARNING,
                account=self.account.name,
            )
        return message_id

    def _smtp(self, message: EmailMessage, to: str) -> None:
        account = self.account
        where = f"{account.smtp_host}:{account.smtp_port}"
        try:
            if account.tls == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    account.smtp_host,
                    account.smtp_port,
                    timeout=self.timeout,
                    context=tls_context(),
                )
            else:
                smtp = smtplib.SMTP(account.smtp_host, account.smtp_port, timeout=self.timeout)
            with smtp:
                if account.tls == "starttls":
                    smtp.starttls(context=tls_context())
                smtp.login(account.user, account.password)
                # The envelope names the one recipient, whatever the headers say.
                refused = smtp.send_message(message, from_addr=account.address, to_addrs=[to])
                if refused:
                    raise MailError(f"the SMTP server {where} refused the recipient {to}")
        except smtplib.SMTPAuthenticationError:
            raise MailError(
                f"the SMTP server {where} refused the login of {account.user}"
            ) from None
        except (smtplib.SMTPException, OSError) as e:
            raise MailError(f"the reply was not sent: the SMTP server {where} said {e}") from None

    def file_in_sent(self, message: EmailMessage) -> str:
        """APPEND ``message`` to the Sent folder with \\Seen; the folder's name."""
        with imap_session(self.account) as imap:
            folder = sent_folder(imap)
            typ, data = imap.append(
                _quote(folder),
                r"(\Seen)",
                imaplib.Time2Internaldate(time.time()),
                message.as_bytes(),
            )
            if typ != "OK":
                raise MailError(f"the IMAP server refused to file the reply in {folder!r}")
            return folder


_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')


def sent_folder(imap: imaplib.IMAP4) -> str:
    """The folder flagged \\Sent (RFC 6154), else "Sent", created when it is missing."""
    typ, data = imap.list()
    names: list[str] = []
    for line in data if typ == "OK" else []:
        if not isinstance(line, bytes):
            continue
        m = _LIST.match(line)
        if not m:
            continue
        name = m.group("name").decode("utf-8", "replace").strip()
        if name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if b"\\sent" in m.group("flags").lower().split():
            return name
        names.append(name)
    if "Sent" not in names:
        typ, data = imap.create(_quote("Sent"))
        if typ != "OK":
            raise MailError("the IMAP server refused to create the Sent folder")
    return "Sent"
