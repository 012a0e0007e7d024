"""Commands on the home itself: init, add, forget, status, serve."""

from __future__ import annotations

import json
import sys
from collections import Counter

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from identity.recovery_code import RecoveryCode
from node import logs
from node.cli.common import (
    Settings,
    _open_node,
    _passphrase,
    _passphrase_given,
    err,
    out,
)
from node.cli.recovery import print_recovery_code
from node.cli.unlock import serving_keys, start_agent
from node.keyagent import KeyAgentError
from node.logs import FORMATS
from node.node import Node
from node.watch import watch_and_add


@click.command()
@click.option(
    "--no-recovery-code",
    is_flag=True,
    help="Make no recovery code: a forgotten passphrase then loses the node for good.",
)
@click.option(
    "--no-unlock",
    is_flag=True,
    help="Do not keep the keys unlocked in a key agent afterwards (see `flurry unlock`).",
)
@click.pass_obj
def init(settings: Settings, no_recovery_code: bool, no_unlock: bool) -> None:
    """Create a node: keys, an owner DID, an empty sealed vault and a recovery code.

    A passphrase typed at the terminal also unlocks the node for the commands that follow
    (a key agent, as `flurry unlock` starts); one given by a script does not."""
    if settings.home.exists():
        raise click.ClickException(
            f"{settings.home.root} already holds a flurry node; refusing to overwrite it "
            "(choose another home with FLURRY_HOME)"
        )
    typed = not _passphrase_given(settings)
    passphrase = _passphrase(settings, confirm=True)
    code = None if no_recovery_code else RecoveryCode.generate()
    keys = Node.init(settings.home, passphrase, code)
    out.print(f"Created a flurry node in {settings.home.root}")
    out.print(f"Owner DID: {keys.owner_did}")
    if code:
        print_recovery_code(code)
    if typed and not no_unlock:
        try:
            start_agent(settings.home, keys)
        except KeyAgentError as e:  # the node is made; only the convenience is missing
            err.print(f"(not unlocked: {e}; commands will ask for the passphrase)", markup=False)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "-v", "--verbose", is_flag=True, help="Print a line for each file as soon as it is saved."
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="Tag the documents (repeatable); grants can limit peers to tags.",
)
@click.option("--sync", is_flag=True, help="Also forget documents under PATH whose file is gone.")
@click.option(
    "--watch",
    is_flag=True,
    help="Keep running: add what changes under PATH, forget what is deleted (Ctrl-C stops).",
)
@click.pass_obj
def add(
    settings: Settings,
    paths: tuple[str, ...],
    verbose: bool,
    tags: tuple[str, ...],
    sync: bool,
    watch: bool,
) -> None:
    """Add notes, documents, mail, calendars, contacts and chat exports (files or folders) to the vault."""
    with _open_node(settings) as node:
        _ = node.embedder  # load (and on first use fetch) the model before the bar starts
        _add_paths(node, paths, verbose, tags, sync or watch)
        if watch:
            watch_and_add(
                node,
                paths,
                lambda: _add_paths(node, paths, verbose, tags, True, quiet=True),
                say=out.print,
            )


def _add_paths(
    node: Node,
    paths: tuple[str, ...],
    verbose: bool,
    tags: tuple[str, ...],
    sync: bool,
    quiet: bool = False,
) -> None:
    for path in paths:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}"),
            console=err,
            transient=False,
        ) as bar:
            task = bar.add_task(f"adding {path}", total=None, current="")

            def progress(p, task=task) -> None:
                bar.update(task, total=p.total, completed=p.done, current=p.path[-40:])
                if verbose:  # a line only once the file is committed: what it reports is saved
                    click.echo(f"{p.outcome}: {p.path}")
                    sys.stdout.flush()

            report = node.add(path, progress, tags=tags, sync=sync)
        if quiet and not (report.added or report.updated or report.removed):
            continue
        out.print(
            f"{path}: added {len(report.added)}, updated {len(report.updated)}, "
            f"unchanged {len(report.unchanged)}, skipped {len(report.skipped)} ({report.chunks} new chunks)"
            + (f", removed {len(report.removed)}" if sync else ""),
            markup=False,
        )
        for skipped in report.skipped[:20]:
            out.print(f"  skipped {skipped.path}: {skipped.reason}", markup=False)
        for removed in report.removed[:20]:
            out.print(f"  removed {removed}: its file is gone", markup=False)
        if len(report.skipped) > 20:
            reasons = Counter(skipped.reason for skipped in report.skipped[20:])
            out.print(
                f"  … and {len(report.skipped) - 20} more skipped: "
                + "; ".join(f"{reason} ({count})" for reason, count in reasons.most_common(5)),
                markup=False,
            )


@click.command()
@click.argument("path")
@click.pass_obj
def forget(settings: Settings, path: str) -> None:
    """Remove a document (or every document under a folder) from the vault and the indexes."""
    with _open_node(settings) as node:
        gone = node.forget(path)
        if not gone:
            raise click.ClickException(f"nothing in the vault at {path}")
        for doc in gone:
            out.print(f"forgot {doc.path} ({doc.chunk_count} chunks)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Where the node lives, who it is, its models and what it holds."""
    with _open_node(settings) as node:
        info = node.status()
    if as_json:
        click.echo(json.dumps(info))
        return
    index = info["index"]
    snapshot = index["snapshot"]
    out.print(f"home       {info['home']}")
    out.print(f"owner DID  {info['owner_did']}")
    out.print(f"node DID   {info['node_did']}")
    out.print(
        f"chat model {info['chat_model']}   embeddings {info['embedding_model']}   ({info['models_dir']})"
    )
    prompts = info["prompts"]
    if prompts["to"] == "this box":
        out.print("prompts    stay on this box (the model runs in this process)")
    else:
        out.print(
            f"prompts    go to {prompts['to']} ({prompts['url']}): {prompts['leaves']}; "
            f"peers' questions: {prompts['peers']}; while it is down: {prompts['fallback']}",
            markup=False,
        )
    out.print(f"documents  {info['documents']}   chunks {info['chunks']}")
    out.print(
        f"index      {index['vectors']} vectors, {index['lexical']} lexical entries, "
        + (
            f"sealed snapshot {snapshot['bytes']} bytes saved {snapshot['saved_at']}"
            if snapshot
            else "no snapshot yet"
        )
    )


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback is said loudly.",
)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option(
    "--public-url",
    "public_urls",
    multiple=True,
    metavar="URL",
    help="An origin other agents reach this node at (https://node.example), named in its signed "
    "agent card (repeatable; default: config.json's public_urls, else the address it listens on).",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    envvar="FLURRY_LOG_FORMAT",
    help="Log lines on stderr as text or JSON lines (default: config.json's log_format, else text). "
    "Logs never hold your questions, answers, documents or their paths.",
)
@click.pass_obj
def serve(
    settings: Settings,
    host: str,
    port: int,
    public_urls: tuple[str, ...],
    log_format: str | None,
) -> None:
    """Run the node: the signed API for your own clients, other agents and local apps.

    While it runs it is the key agent: commands take the keys from it. With no passphrase given
    and no terminal (as a service), it waits locked until you run `flurry unlock`."""
    # Lazy: uvicorn and the whole HTTP app load only to serve, not for every command.
    from node.serve import serve as run_server

    config = settings.home.load_config()
    logs.configure(log_format or config.log_format)
    # serve is the key agent while it runs; with no passphrase at hand it waits locked.
    with serving_keys(settings) as keys:
        node = Node.open(settings.home, keys=keys, say=lambda line: logs.event("node", line))
        try:
            run_server(node, host, port, public_urls=public_urls or config.public_urls)
        finally:
            node.close()


COMMANDS = (init, add, forget, status, serve)
