"""The `flurry` command line: the group, its commands (one module per family), and the one
translation from errors to what the user sees.

Scripts and tests use the same commands without a prompt: FLURRY_HOME picks the home,
FLURRY_PASSPHRASE or --passphrase-file unlocks it, `ask --json` prints one JSON object.
A failure the user can act on (any of `node.errors.PART_ERRORS`) is one line on stderr and exit status 1;
anything else is a bug, and prints its traceback and a line asking for a report.
"""

from __future__ import annotations

import traceback
from importlib.metadata import PackageNotFoundError, version

import click

from node.cli import (
    backup,
    chat,
    contracts,
    delegate,
    home,
    inbox,
    infer,
    keys,
    mail,
    models,
    nostr,
    owner,
    pins,
    receipts,
    recovery,
    service,
    skill_publish,
    skill_sharing,
    unlock,
)
from node.cli.chat import _print_answer, tui
from node.cli.common import Settings, _on_terminal, err
from node.cli.models import _parse_size
from node.errors import PART_ERRORS
from node.home import Home

__all__ = ["cli", "main", "EXIT_STATUS", "_parse_size", "_print_answer"]

# The one translation from errors to exit statuses; the first class an error is an instance of
# decides. A new error needs a line here only if it should exit with another status.
EXIT_STATUS: dict[type[BaseException], int] = {
    **{
        part: 1 for part in PART_ERRORS
    },  # every part's errors: the message says what went wrong and what to do
    FileNotFoundError: 1,  # a path named on the command line that is not there
    FileExistsError: 1,  # `flurry init` over an existing node
}
BUG_STATUS = 1  # what Python itself exits with on an uncaught exception: scripts see no change
INTERRUPTED_STATUS = 130


def _exit_status(error: BaseException) -> int | None:
    return next((status for kind, status in EXIT_STATUS.items() if isinstance(error, kind)), None)


def _version() -> str:
    try:
        return version("flurry-node")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


class FlurryGroup(click.Group):
    """Turns the errors a user can act on into one clear line, and a bug into a report."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: usage errors, --help, a declined prompt
        except KeyboardInterrupt:
            err.print("interrupted; everything reported as done is saved")
            ctx.exit(INTERRUPTED_STATUS)
        except Exception as error:
            status = _exit_status(error)
            if status is None:
                err.print(traceback.format_exc().rstrip(), markup=False)
                err.print(
                    f"This is a bug in flurry {_version()}, not something you did: please report it, "
                    "with the traceback above and the command you ran.",
                    markup=False,
                )
                ctx.exit(BUG_STATUS)
            failure = click.ClickException(str(error))
            # click types exit_code as a class variable, yet reads it from the instance
            # (ClickException.exit_code in BaseCommand.main): this exception's own status.
            failure.exit_code = status  # type: ignore[misc]
            raise failure from None


@click.group(cls=FlurryGroup, invoke_without_command=True)
@click.option(
    "--home", envvar="FLURRY_HOME", help="The node's home folder (default: your user data folder)."
)
@click.option(
    "--passphrase-file", type=click.Path(dir_okay=False), help="Read the passphrase from this file."
)
@click.pass_context
def cli(ctx: click.Context, home: str | None, passphrase_file: str | None) -> None:
    """flurry: your personal AI node. Your data stays sealed at home; a local model answers from it."""
    ctx.obj = Settings(Home.from_env(home), passphrase_file)
    if ctx.invoked_subcommand is None:
        if not _on_terminal():  # scripts and dumb terminals get the help, as before the app
            raise click.exceptions.NoArgsIsHelpError(ctx)
        ctx.invoke(tui)


owner.skills.add_command(pins.review)  # `flurry skills review` (pinned tools)
for family in (
    home,
    chat,
    owner,
    models,
    nostr,
    inbox,
    recovery,
    unlock,
    keys,
    service,
    backup,
    infer,
    receipts,
    skill_sharing,
    skill_publish,
    mail,
    contracts,
    delegate,
):
    for command in family.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="flurry")


if __name__ == "__main__":
    main()
