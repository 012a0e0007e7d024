"""Commands for a node that lives on a home box: `flurry service install | status | logs |
uninstall` (node.service) and `flurry doctor` (node.doctor)."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import click

from identity.keyring import Keyring
from node import doctor as checkup
from node import service as svc
from node.cli.common import Settings, _on_terminal, _passphrase, err, out


@click.group()
def service() -> None:
    """Run the node as a systemd user service: install, status, logs, uninstall."""


@service.command()
@click.option(
    "--credential",
    type=click.Choice(svc.CREDENTIALS),
    default="none",
    show_default=True,
    help="Where the service gets the passphrase: none (it starts locked and waits for "
    "`flurry unlock`), file PATH (a file only you can read), encrypted (sealed by systemd-creds).",
)
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--writable",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Another folder the service may write to (the unit makes the rest of the system "
    "read-only), e.g. a backup destination (repeatable).",
)
@click.option("--host", help="The address `flurry serve` listens on (default: loopback).")
@click.option("--port", type=int, help="Its port (default: 8765).")
@click.option(
    "--print", "dry_run", is_flag=True, help="Print the unit and the commands; change nothing."
)
@click.pass_obj
def install(
    settings: Settings,
    credential: str,
    path: str | None,
    writable: tuple[str, ...],
    host: str | None,
    port: int | None,
    dry_run: bool,
) -> None:
    """Install `flurry serve` for this home as a systemd user service that starts at boot.

    `--credential file PATH` names the passphrase file. Without a user systemd (a container, a
    box without systemd) nothing is written: the unit, the commands and a plain nohup / cron
    line are printed instead, with the reason."""
    home = settings.home
    home.require()
    systemd = svc.Systemd.find()
    if path is not None and credential != "file":
        raise click.UsageError("PATH is the passphrase file of `--credential file PATH` only")
    chosen = svc.Credential()
    passphrase = None
    if credential == "file":
        if path is None:
            raise click.UsageError(
                "--credential file needs the passphrase file: --credential file PATH"
            )
        file = Path(path).expanduser().absolute()
        passphrase = svc.read_passphrase_file(file)  # refuses a file others can read
        chosen = svc.Credential("file", file)
    elif credential == "encrypted":
        if not systemd.reachable:
            raise svc.ServiceError(
                f"--credential encrypted needs systemd-creds and a user systemd: {systemd.why}"
            )
        svc.require_encrypted_credentials(systemd)  # before asking for the passphrase
        passphrase = _passphrase(settings)
        chosen = svc.Credential("encrypted", svc.encrypted_credential_path(systemd.environ))
    if passphrase is not None:
        # A wrong passphrase in the unit would fail every start: find out now.
        Keyring.unlock(home.keyring, passphrase)
    plan = svc.plan(
        home.root,
        chosen,
        systemd,
        writable=[Path(w).expanduser().absolute() for w in writable],
        models=home.models,
        serve_options=[
            *(["--host", host] if host else []),
            *(["--port", str(port)] if port else []),
        ],
    )
    if dry_run or not systemd.reachable:
        _print_plan(plan, None if dry_run else systemd.why)
        return
    svc.install(plan, passphrase)
    out.print(f"Installed {plan.unit_path}", markup=False)
    for done in plan.done:
        out.print(f"  ran: {done}", markup=False)
    out.print(_credential_note(chosen), markup=False)
    _linger_hint()
    out.print("`flurry service status` shows it; `flurry service logs` shows its log.")


def _credential_note(credential: svc.Credential) -> str:
    return {
        "none": "No passphrase in the service: the node starts locked; run `flurry unlock` after "
        "each boot.",
        "file": f"The passphrase comes from {credential.path}, in plaintext on disk, readable only "
        "by you: anyone who can read your files (root, a backup of your home) can read it.",
        "encrypted": f"The passphrase is sealed in {credential.path} under this machine's "
        "credential key (its TPM where it has one): it opens only on this box.",
    }[credential.kind]


def _linger_hint() -> None:
    user = getpass.getuser()
    if svc.linger_enabled(user) is not True:
        out.print(
            "Your services start when you log in. To start flurry at boot without a login, run "
            f"once: loginctl enable-linger {user}",
            markup=False,
        )


def _print_plan(plan: svc.Plan, why: str | None) -> None:
    if why:
        out.print(f"Not installed: {why}. Nothing was written.", markup=False)
        out.print("Where a user systemd runs, this unit does it:", markup=False)
    out.print(f"--- {plan.unit_path}", markup=False)
    click.echo(plan.unit, nl=False)
    out.print("---", markup=False)
    out.print("Install it with:", markup=False)
    out.print(f"  mkdir -p {plan.unit_path.parent}  # then save the unit above there", markup=False)
    out.print(
        f"  systemctl --user daemon-reload && systemctl --user enable --now {svc.UNIT_NAME}",
        markup=False,
    )
    out.print(
        f"  loginctl enable-linger {getpass.getuser()}  # start at boot, before any login",
        markup=False,
    )
    out.print("Without systemd, run it in the background now:", markup=False)
    out.print(f"  nohup {plan.plain} &", markup=False)
    out.print("and at every boot, with this line in `crontab -e`:", markup=False)
    out.print(f"  {svc.cron_line(plan.plain)}", markup=False)
    out.print(_credential_note(plan.credential), markup=False)


@service.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Whether the service is installed, enabled and running."""
    info = svc.state(svc.Systemd.find())
    info["serving"] = settings.home.running_node()
    if as_json:
        click.echo(json.dumps(info))
        return
    out.print(checkup.check_service(info).line(), markup=False)
    if info.get("home"):
        out.print(f"      serves the home {info['home']}", markup=False)
    out.print(
        f"      {'served now at ' + info['serving'] if info['serving'] else 'no node serves this home now'}",
        markup=False,
    )


@service.command()
@click.option("-n", "--lines", default=100, show_default=True, help="How many of the last lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.pass_obj
def logs(settings: Settings, lines: int, follow: bool) -> None:
    """The service's log (JSON lines), from the user journal."""
    systemd = svc.Systemd.find()
    if not systemd.reachable:
        log = settings.home.root / "serve.log"
        hint = f"; a node started by the nohup / cron line logs to {log}" + (
            "" if log.exists() else " (there is none yet)"
        )
        raise svc.ServiceError(f"no user journal to read: {systemd.why}{hint}")
    try:
        run = subprocess.run(["journalctl", *svc.journal_command(lines, follow)], check=False)
    except FileNotFoundError:
        raise svc.ServiceError(
            "journalctl is not on PATH: the user journal cannot be read"
        ) from None
    if run.returncode != 0:
        sys.exit(run.returncode)


@service.command()
def uninstall() -> None:
    """Stop the service and remove its unit (and its sealed passphrase, if any). The home stays."""
    systemd = svc.Systemd.find()
    done = svc.uninstall(systemd)
    for line in done or [f"no {svc.UNIT_NAME} was installed at {svc.unit_path()}"]:
        out.print(line, markup=False)
    if not systemd.reachable:
        out.print(
            f"No user systemd here ({systemd.why}): if you started flurry with the nohup / cron "
            "line, remove that line from `crontab -e` and stop the node (its pid is in "
            "serve.json in the home).",
            markup=False,
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def doctor(settings: Settings, as_json: bool) -> None:
    """What this box has and what the node uses, each line OK, WARN or FAIL with what to do.

    Needs no passphrase: it reads nothing sealed."""
    progress = None
    if not as_json and _on_terminal():

        def progress(name: str, done: int, total: int) -> None:
            err.print(f"hashing {name}: {done * 100 // max(total, 1)}%", end="\r", markup=False)

    report = checkup.run(settings.home, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        for check in report.checks:
            out.print(check.line(), markup=False)
        out.print(report.summary(), markup=False)
    if report.worst == "FAIL":
        sys.exit(1)


COMMANDS = (service, doctor)
