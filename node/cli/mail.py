"""Mail: the owner's IMAP/SMTP account (`flurry mail add | list | remove | check | fetch`).

The password (or app password) is read like the passphrase: from --password-file, from
FLURRY_MAIL_PASSWORD (scripts), or asked at the terminal without echo. It is tried before
anything is saved and then sealed in the vault; it is never written to the config or a log.
These commands open the home itself: stop `flurry serve` first (it picks the account up when
it starts again).
"""

from __future__ import annotations

import os
import sys

import click

from node.cli.common import Settings, _open_node, err, out
from node.mail_account import (
    DEFAULT_MAX_BYTES,
    TLS_MODES,
    MailAccount,
    MailError,
    MailFetcher,
    check_transport,
    get_account,
    imap_session,
    list_accounts,
    remove_account,
    save_account,
    start_from_now,
)

PASSWORD_ENV = "FLURRY_MAIL_PASSWORD"


def _password(password_file: str | None) -> str:
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise click.ClickException(f"cannot read the password file: {e.strerror}") from None
    if os.environ.get(PASSWORD_ENV) is not None:
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise click.ClickException(f"no mail password: set {PASSWORD_ENV} or pass --password-file")
    return click.prompt("Mail password (or app password)", hide_input=True, err=True)


def _try_smtp(account: MailAccount) -> None:
    """Log in to the SMTP server too, so a wrong SMTP setting is said now, not at the first reply."""
    import smtplib

    from node.mail_account import tls_context

    where = f"{account.smtp_host}:{account.smtp_port}"
    try:
        if account.tls == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                account.smtp_host, account.smtp_port, timeout=30, context=tls_context()
            )
        else:
            smtp = smtplib.SMTP(account.smtp_host, account.smtp_port, timeout=30)
        with smtp:
            if account.tls == "starttls":
                smtp.starttls(context=tls_context())
            smtp.login(account.user, account.password)
    except smtplib.SMTPAuthenticationError:
        raise MailError(f"the SMTP server {where} refused the login of {account.user}") from None
    except (smtplib.SMTPException, OSError) as e:
        raise MailError(f"cannot use the SMTP server {where}: {e}") from None


@click.group()
def mail() -> None:
    """Your mail account: new mail fetched into your vault (tag "mail") and handed to the inbox agent."""


@mail.command("add")
@click.option("--imap-host", required=True, help="The IMAP server, e.g. imap.example.com.")
@click.option("--imap-port", type=int, default=None, help="Default: 993 with --tls tls, else 143.")
@click.option("--user", required=True, help="The login name (often the address).")
@click.option("--smtp-host", default="", help="The SMTP server replies go out through.")
@click.option("--smtp-port", type=int, default=None, help="Default: 465 with --tls tls, else 587.")
@click.option(
    "--tls",
    type=click.Choice(TLS_MODES),
    default="starttls",
    show_default=True,
    help="none-loopback-only: plain text, allowed only to 127.0.0.1/::1/localhost.",
)
@click.option(
    "--address", default=None, help="Your address, the From of replies (default: --user)."
)
@click.option(
    "--name", "owner_name", default="", help="Your name, shown in From and the disclosure line."
)
@click.option("--folder", default="INBOX", show_default=True, help="The folder to watch.")
@click.option(
    "--poll-seconds",
    type=float,
    default=300.0,
    show_default=True,
    help="Polling interval where the server has no IDLE.",
)
@click.option(
    "--max-mb",
    type=float,
    default=DEFAULT_MAX_BYTES / 1024 / 1024,
    show_default=True,
    help="Larger messages are kept with their headers only.",
)
@click.option(
    "--password-file", type=click.Path(dir_okay=False), help="Read the password from this file."
)
@click.option(
    "--include-existing",
    is_flag=True,
    help="Also fetch the mail already in the folder (it is handed to the inbox agent too).",
)
@click.pass_obj
def mail_add(
    settings: Settings,
    imap_host: str,
    imap_port: int | None,
    user: str,
    smtp_host: str,
    smtp_port: int | None,
    tls: str,
    address: str | None,
    owner_name: str,
    folder: str,
    poll_seconds: float,
    max_mb: float,
    password_file: str | None,
    include_existing: bool,
) -> None:
    """Add a mail account: the login is tried first; the password is sealed in the vault."""
    address = address or user
    if "@" not in address:
        raise click.ClickException("--address: give your mail address (the From of replies)")
    check_transport(imap_host, tls, "IMAP")
    if smtp_host:
        check_transport(smtp_host, tls, "SMTP")
    if poll_seconds < 5:
        raise click.ClickException("--poll-seconds: at least 5")
    account = MailAccount(
        name=address.lower(),
        imap_host=imap_host,
        imap_port=imap_port or (993 if tls == "tls" else 143),
        user=user,
        password=_password(password_file),
        address=address,
        smtp_host=smtp_host,
        smtp_port=smtp_port or (465 if tls == "tls" else 587),
        tls=tls,
        folder=folder,
        poll_seconds=poll_seconds,
        max_bytes=int(max_mb * 1024 * 1024),
        owner_name=owner_name,
    )
    with imap_session(account):  # a refused login stops here, before anything is saved
        pass
    if smtp_host:
        _try_smtp(account)
    with _open_node(settings) as node:
        if include_existing:
            save_account(node, account)
            left = 0
        else:
            with imap_session(account) as imap:
                account, left = start_from_now(node, account, imap)
    out.print(
        f"mail account {account.name} added (IMAP {imap_host}, {tls}); its password is sealed in the vault",
        markup=False,
    )
    if left:
        out.print(
            f"the {left} message(s) already in {folder} are left as they are; only new mail is "
            "fetched (add the account again with --include-existing to read them too)",
            markup=False,
        )


@mail.command("list")
@click.pass_obj
def mail_list(settings: Settings) -> None:
    """The mail accounts (never their passwords)."""
    with _open_node(settings) as node:
        accounts = list_accounts(node)
        states = {a.name: MailFetcher(node, a).state() for a in accounts}
    if not accounts:
        out.print("no mail account (flurry mail add)")
    for a in accounts:
        smtp = f"SMTP {a.smtp_host}:{a.smtp_port}" if a.smtp_host else "no SMTP"
        last = states[a.name][1]
        out.print(
            f"{a.name}  IMAP {a.user}@{a.imap_host}:{a.imap_port} {a.folder}  {smtp}  {a.tls}  last UID {last}",
            markup=False,
        )


@mail.command("remove")
@click.argument("name")
@click.pass_obj
def mail_remove(settings: Settings, name: str) -> None:
    """Forget an account and its password (the mail already stored stays in the vault)."""
    with _open_node(settings) as node:
        remove_account(node, name)
    out.print(f"mail account {name} removed", markup=False)


@mail.command("check")
@click.argument("name", required=False)
@click.pass_obj
def mail_check(settings: Settings, name: str | None) -> None:
    """Connect and say how many messages are new."""
    with _open_node(settings) as node:
        account = get_account(node, name)
        new = MailFetcher(node, account).count_new()
    out.print(f"{account.name}: {new} new message{'s' if new != 1 else ''}", markup=False)


@mail.command("fetch")
@click.argument("name", required=False)
@click.pass_obj
def mail_fetch(settings: Settings, name: str | None) -> None:
    """Fetch the new mail now, store it in the vault (tag "mail") and hand each message to the
    inbox agent, as `flurry serve` does (mail behind the watermark is never handed on again)."""
    with _open_node(settings) as node:
        account = get_account(node, name)
        report = MailFetcher(node, account, node.inbox.on_message).fetch()
    extra = [
        f"{report.duplicates} already stored" if report.duplicates else "",
        f"{report.oversized} over the size limit (headers only)" if report.oversized else "",
        f"{report.unreadable} unreadable (headers only)" if report.unreadable else "",
        "the folder's UIDVALIDITY changed: read again" if report.reset else "",
    ]
    said = "; ".join(e for e in extra if e)
    out.print(
        f"{account.name}: {report.fetched} new message(s) stored" + (f" ({said})" if said else ""),
        markup=False,
    )
    if report.unreadable:
        err.print("some bodies could not be read; their headers are stored", markup=False)


COMMANDS = [mail]
