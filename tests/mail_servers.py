"""Real mail servers on loopback for the tests: pymap (an IMAP4rev1 server with IDLE, its
in-memory dict backend) and aiosmtpd (an SMTP server whose handler keeps what it received),
each on an event loop in a thread of this process, on a free port of 127.0.0.1.

``MailServers.start(tls=...)``: with ``tls`` a throwaway self-signed certificate for
127.0.0.1 is made with ``cryptography`` and both servers require STARTTLS before a login; the
client trusts it through SSL_CERT_FILE (``trust_env``), the way a node would trust a private
CA. Without ``tls`` both speak plain text, which the node allows on loopback only.
"""

from __future__ import annotations

import asyncio
import datetime
import imaplib
import ipaddress
import socket
import ssl
import threading
import time
from argparse import Namespace
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
USER = "owner@example.test"
PASSWORD = "app-password-7Qx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 (an IP SAN), valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flurry test mail server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Received:
    """One message the SMTP sink accepted: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class _Sink:
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        raw = envelope.original_content or envelope.content
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), raw, message))
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == USER
        and auth_data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)


class MailServers:
    """An IMAP server and an SMTP sink on loopback; ``stop()`` ends both."""

    def __init__(self, folder: Path, *, tls: bool = False, idle: bool = True) -> None:
        self.tls = tls
        self.cert: Path | None = None
        server_ctx: ssl.SSLContext | None = None
        if tls:
            self.cert, key = self_signed(folder)
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(self.cert, key)
        self.imap_port = free_port()
        self.smtp_port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="imap", daemon=True)
        self._thread.start()
        self._stack = AsyncExitStack()
        asyncio.run_coroutine_threadsafe(self._start_imap(server_ctx, idle), self._loop).result(10)
        self.sink = _Sink()
        self._smtp = Controller(
            self.sink,
            hostname=HOST,
            port=self.smtp_port,
            authenticator=_authenticator,
            auth_require_tls=tls,
            tls_context=server_ctx,
            require_starttls=tls,
            ready_timeout=5,
        )
        self._smtp.start()

    async def _start_imap(self, ssl_context: ssl.SSLContext | None, idle: bool) -> None:
        from pymap.backend.dict import Config, DictBackend, Login
        from pymap.config import BackendCapability
        from pymap.imap import IMAPService

        class Configured(Config):
            """The dict backend's settings, with IDLE offered or not (its own switch is unused)."""

            @property
            def backend_capability(self) -> BackendCapability:
                return BackendCapability(idle=idle, object_id=True, multi_append=True)

        args = Namespace(
            debug=False,
            host=HOST,
            port=str(self.imap_port),
            cert=None,
            key=None,
            tls=ssl_context is not None,
            passlib_cfg=None,
            inherited_sockets=None,
            proxy_protocol=None,
            demo_data=False,
            demo_user=USER,
            demo_password=PASSWORD,
        )
        overrides: dict = {"invalid_user_sleep": 0.0}
        if ssl_context is not None:
            overrides["ssl_context"] = ssl_context
        config = Configured.from_args(args, **overrides)
        login = Login(config)
        await DictBackend._add_demo_user(config, login)  # the one user, with its password
        backend = DictBackend(login, config)
        config.apply_context()
        await backend.start(self._stack)
        await IMAPService(backend, config).start(self._stack)

    def stop(self) -> None:
        self._smtp.stop()
        asyncio.run_coroutine_threadsafe(self._stack.aclose(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # --- what the tests do as another client of the mailbox ---

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
        try:
            if self.tls:
                imap.starttls(ssl.create_default_context(cafile=str(self.cert)))
            imap.login(USER, PASSWORD)
            yield imap
        finally:
            with suppress(OSError, imaplib.IMAP4.error):
                imap.logout()

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put ``raw`` in the mailbox the way a mail server's delivery would (APPEND)."""
        with self.client() as imap:
            typ, data = imap.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            assert typ == "OK", data

    def folder_messages(self, folder: str) -> list[tuple[bytes, bytes]]:
        """(flags, raw message) of every message in ``folder``."""
        with self.client() as imap:
            typ, _ = imap.select(_quote(folder), readonly=True)
            if typ != "OK":
                return []
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            found = []
            for item in data:
                if isinstance(item, tuple):
                    found.append((item[0], item[1]))
            return found


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
