"""The `flurry` command line.

Scripts and tests use the same commands without a prompt: FLURRY_HOME picks the home,
FLURRY_PASSPHRASE or --passphrase-file unlocks it, `ask --json` prints one JSON object.
Errors are one line on stderr and exit status 1; never a traceback for a known failure.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from agent.answer import answer_events, citation
from agent.models import CATALOG, HUB_CATALOG, ModelError, installed_models, other_models, resolve_model
from agent.tools import AskOwner, ToolCall, ToolTurn
from identity.did_key import verification_method_id
from identity.keyring import Keyring, KeyringError
from identity.signing_client import signed_client
from node.client import NodeClient, NodeUnavailable
from node.home import Home, HomeError
from node.node import OWNER_QUESTION, Node
from node.owner import LocalOwner, Owner, OwnerError, RemoteOwner
from skills.host import SkillError
from skills.manifest import ManifestError
from skills.registry import SkillInstallError
from store.sealing import SealError
from store.vault import VaultError

# No emoji codes (":key:" in "did:key:" would become 🔑), no highlighting, no wrapping of paths.
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)
out = Console(highlight=False, emoji=False, soft_wrap=True)

# Failures a user can act on: shown as one line, not a traceback.
KNOWN_ERRORS = (KeyringError, NodeUnavailable, OwnerError, SkillInstallError, SkillError, ManifestError, HomeError, ModelError, VaultError, SealError, FileNotFoundError, FileExistsError, ValueError)


class Settings:
    def __init__(self, home: Home, passphrase_file: str | None) -> None:
        self.home = home
        self.passphrase_file = passphrase_file


def _passphrase(settings: Settings, *, confirm: bool = False) -> str:
    if settings.passphrase_file:
        try:
            with open(settings.passphrase_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except OSError as e:
            raise click.ClickException(f"cannot read the passphrase file: {e.strerror}") from None
    if os.environ.get("FLURRY_PASSPHRASE") is not None:
        return os.environ["FLURRY_PASSPHRASE"]
    if not sys.stdin.isatty():
        raise click.ClickException("no passphrase: set FLURRY_PASSPHRASE or pass --passphrase-file")
    return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm, err=True)


@contextmanager
def _open_node(settings: Settings, *, terminal_prompt: AskOwner | None = None) -> Iterator[Node]:
    settings.home.require()
    node = Node.open(settings.home, _passphrase(settings), say=lambda line: err.print(line), terminal_prompt=terminal_prompt)
    try:
        yield node
    finally:
        node.close()


class FlurryGroup(click.Group):
    """Turns the errors a user can act on into one clear line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KNOWN_ERRORS as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            err.print("interrupted; everything reported as done is saved")
            ctx.exit(130)


@click.group(cls=FlurryGroup, invoke_without_command=True)
@click.option("--home", envvar="FLURRY_HOME", help="The node's home folder (default: your user data folder).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False), help="Read the passphrase from this file.")
@click.pass_context
def cli(ctx: click.Context, home: str | None, passphrase_file: str | None) -> None:
    """flurry: your personal AI node. Your data stays sealed at home; a local model answers from it."""
    ctx.obj = Settings(Home.from_env(home), passphrase_file)
    if ctx.invoked_subcommand is None:
        if not _on_terminal():  # scripts and dumb terminals get the help, as before the app
            raise click.exceptions.NoArgsIsHelpError(ctx)
        ctx.invoke(tui)


@cli.command()
@click.pass_obj
def init(settings: Settings) -> None:
    """Create a node: keys, an owner DID and an empty sealed vault."""
    if settings.home.exists():
        raise click.ClickException(
            f"{settings.home.root} already holds a flurry node; refusing to overwrite it "
            "(choose another home with FLURRY_HOME)"
        )
    passphrase = _passphrase(settings, confirm=True)
    keys = Node.init(settings.home, passphrase)
    out.print(f"Created a flurry node in {settings.home.root}")
    out.print(f"Owner DID: {keys.owner_did}")


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-v", "--verbose", is_flag=True, help="Print a line for each file as soon as it is saved.")
@click.option("--tag", "tags", multiple=True, help="Tag the documents (repeatable); grants can limit peers to tags.")
@click.option("--sync", is_flag=True, help="Also forget documents under PATH whose file is gone.")
@click.option("--watch", is_flag=True, help="Keep running: add what changes under PATH, forget what is deleted (Ctrl-C stops).")
@click.pass_obj
def add(settings: Settings, paths: tuple[str, ...], verbose: bool, tags: tuple[str, ...], sync: bool, watch: bool) -> None:
    """Add notes, documents, mail, calendars, contacts and chat exports (files or folders) to the vault."""
    with _open_node(settings) as node:
        _ = node.embedder  # load (and on first use fetch) the model before the bar starts
        _add_paths(node, paths, verbose, tags, sync or watch)
        if watch:
            from node.watch import watch_and_add

            watch_and_add(node, paths, lambda: _add_paths(node, paths, verbose, tags, True, quiet=True), say=out.print)


def _add_paths(node: Node, paths: tuple[str, ...], verbose: bool, tags: tuple[str, ...], sync: bool, quiet: bool = False) -> None:
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
            out.print(f"  … and {len(report.skipped) - 20} more skipped: "
                      + "; ".join(f"{reason} ({count})" for reason, count in reasons.most_common(5)), markup=False)


@cli.command()
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


class LocalAsker:
    """Answers in this process: the home is not served by a running node."""

    def __init__(self, node: Node, k: int) -> None:
        self._node, self._k = node, k
        self.new()

    def new(self) -> None:
        self._conversation = self._node.conversation()
        self._conversation.k = self._k

    def ask(self, question: str) -> Iterator[dict]:
        turn = self._node.ask_with_tools(question, _ask_owner_at_terminal)
        if turn is not None:
            yield from _tool_events(turn)
            return
        answer = self._conversation.ask(question)
        yield {"type": "sources", "sources": [s.to_json() for s in answer.sources]}
        for piece in answer:
            yield {"type": "token", "text": piece}
        yield from answer_events(answer, owner=True)   # the same events /api/ask gives the owner


def _ask_owner_at_terminal(call: ToolCall) -> bool:
    """The policy said "ask": show the tool and every argument, and take the owner's answer."""
    if call.tool == OWNER_QUESTION:  # a skill's own yes/no question
        err.print(f"A skill asks you: {call.arguments['question']}", markup=False)
    else:
        err.print(f"A skill wants to run {call.tool} with:", markup=False)
        err.print(json.dumps(call.arguments, indent=2, ensure_ascii=False), markup=False)
    if not sys.stdin.isatty():
        if call.tool == OWNER_QUESTION:
            err.print("(no terminal to ask you: the answer is no)", markup=False)
        else:
            err.print(f"(no terminal to ask you; `flurry skills policy {call.tool} allow` lets it run unasked)", markup=False)
        return False
    return click.confirm("Run it?", default=False, err=True)


def _tool_events(turn: ToolTurn) -> Iterator[dict]:
    assert turn.call is not None and turn.decision is not None
    text = turn.result if turn.ran else f"(not run: {turn.decision.reason})"
    yield {"type": "tool", "tool": turn.call.tool, "arguments": turn.call.arguments, "ran": turn.ran, "reason": turn.decision.reason}
    yield {"type": "sources", "sources": []}
    yield {"type": "token", "text": text}
    yield {"type": "done", "answer": text}


class RemoteAsker:
    """Answers from the running node, over its signed API (`flurry serve` holds the home)."""

    def __init__(self, client: NodeClient, k: int) -> None:
        self._client, self._k = client, k
        self.new()

    def new(self) -> None:
        self._conversation_id: str | None = None

    def ask(self, question: str) -> Iterator[dict]:
        for event in self._client.ask(question, self._k, conversation=self._conversation_id, tools=True):
            if event["type"] == "conversation":
                self._conversation_id = event["id"]
            elif event["type"] == "approval":  # the node waits for this answer before the tool runs
                approve = _ask_owner_at_terminal(ToolCall(event["tool"], event["arguments"]))
                self._client.decide_approval(event["id"], approve)
                continue
            yield event


@contextmanager
def _asker(settings: Settings, k: int) -> Iterator[LocalAsker | RemoteAsker]:
    url = settings.home.running_node()
    if url is None:
        # The owner sits at this terminal: a skill's owner.ask comes here too.
        with _open_node(settings, terminal_prompt=_ask_owner_at_terminal) as node:
            yield LocalAsker(node, k)
        return
    settings.home.require()
    keys = Keyring.unlock(settings.home.keyring, _passphrase(settings))
    client = NodeClient(url, keys)
    try:
        yield RemoteAsker(client, k)
    finally:
        client.close()


@cli.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: answer and sources.")
@click.option("-k", "k", default=3, show_default=True, help="How many chunks to read before answering.")
@click.pass_obj
def ask(settings: Settings, question: str, as_json: bool, k: int) -> None:
    """Ask one question; the answer streams, with numbered sources."""
    with _asker(settings, k) as asker:
        if as_json:
            events = list(asker.ask(question))
            done = next(e for e in events if e["type"] == "done")
            # The sources the answer ended with (their quotes are what it rests on).
            sources = done.get("sources", next(e["sources"] for e in events if e["type"] == "sources"))
            tool = next(({k: v for k, v in e.items() if k != "type"} for e in events if e["type"] == "tool"), None)
            click.echo(json.dumps({"answer": done["answer"], "grounded": bool(done.get("grounded", False)), "sources": sources,
                                   **({"tool": tool} if tool else {})}))
        else:
            _print_answer(asker.ask(question))


def _print_answer(events: Iterator[dict]) -> None:
    """Stream the verified sentences to the terminal, then the quotes they rest on and the
    numbered sources; a sentence the verifier refused is shown marked, never as the answer."""
    sources: list[dict] = []
    dropped: list[str] = []
    tool_ran = False
    for event in events:
        if event["type"] == "tool":
            tool_ran = True
            err.print(f"[{event['tool']}] {event['reason']}", style="dim", markup=False)
        elif event["type"] == "queued":
            err.print(f"(waiting: {event['ahead']} ahead in the node's queue)", style="dim")
        elif event["type"] == "sources":
            sources = event["sources"]
        elif event["type"] == "token":
            sys.stdout.write(event["text"])
            sys.stdout.flush()
        elif event["type"] == "done":
            sources = event.get("sources", sources)
            dropped = event.get("dropped", [])
    sys.stdout.write("\n")
    for sentence in dropped:
        out.print(f"  ✗ not in your data, not shown as the answer: {sentence}", style="dim strike", markup=False)
    if not sources:
        if not tool_ran:
            out.print("(no notes matched; add some with `flurry add PATH`)", style="dim")
        return
    for number, s in enumerate(sources, start=1):
        cite = citation(s.get("meta") or {})
        where = f"{s['path']}: {cite}" if cite else f"{s['path']} (chunk {s['chunk']})"
        if s.get("quote"):
            out.print(f"*[{number}] {where}", style="dim", markup=False)
            out.print(f"     «{s['quote']}»", markup=False)
        else:
            out.print(f" [{number}] {where} — {s['snippet'][:100]}", style="dim", markup=False)


def _on_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


@cli.command()
@click.pass_obj
def tui(settings: Settings) -> None:
    """The terminal app: chat, your data, skills, approvals and identity in one place."""
    from node.tui_launch import run_tui

    run_tui(settings.home, lambda: _passphrase(settings), say=lambda line: err.print(line))


@cli.command()
@click.option("--plain", is_flag=True, help="The line-by-line chat, even on a terminal (for scripts and dumb terminals).")
@click.pass_obj
def chat(settings: Settings, plain: bool) -> None:
    """Chat with your node; it remembers the conversation. /new starts over, /quit (or Ctrl-D) leaves.

    On a terminal this opens the terminal app; --plain (or no terminal) keeps the line chat."""
    if not plain and _on_terminal():
        from node.tui_launch import run_tui

        run_tui(settings.home, lambda: _passphrase(settings), say=lambda line: err.print(line))
        return
    with _asker(settings, 3) as asker:
        out.print("Ask about your notes. /new starts a new conversation, /quit leaves.", style="dim")
        while True:
            try:
                line = click.prompt("you", prompt_suffix="> ", default="", show_default=False, err=True)
            except (EOFError, click.Abort):
                out.print()
                return
            line = line.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                return
            if line == "/new":
                asker.new()
                out.print("new conversation", style="dim")
                continue
            try:
                _print_answer(asker.ask(line))
            except KeyboardInterrupt:  # Ctrl-C stops this answer, not the chat
                out.print("\n(stopped)", style="dim")


@cli.command()
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
    out.print(f"chat model {info['chat_model']}   embeddings {info['embedding_model']}   ({info['models_dir']})")
    out.print(f"documents  {info['documents']}   chunks {info['chunks']}")
    out.print(
        f"index      {index['vectors']} vectors, {index['lexical']} lexical entries, "
        + (f"sealed snapshot {snapshot['bytes']} bytes saved {snapshot['saved_at']}" if snapshot else "no snapshot yet")
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; anything but loopback is said loudly.")
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--public-url", "public_urls", multiple=True, metavar="URL",
              help="An origin other agents reach this node at (https://node.example), named in its signed "
                   "agent card (repeatable; default: config.json's public_urls, else the address it listens on).")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, public_urls: tuple[str, ...]) -> None:
    """Run the node: the signed API for your own clients, other agents and local apps."""
    from node.serve import serve as run_server

    with _open_node(settings) as node:
        urls = public_urls or settings.home.load_config().public_urls
        run_server(node, host, port, say=lambda line: err.print(line), public_urls=urls)


@cli.group()
def grants() -> None:
    """What other agents (by DID) may ask of this node."""


@contextmanager
def _owner(settings: Settings) -> Iterator[Owner]:
    """The owner's management calls: on the home itself, or through the node serving it."""
    url = settings.home.running_node()
    if url is None:
        with _open_node(settings) as node:
            yield LocalOwner(node)
        return
    settings.home.require()
    keys = Keyring.unlock(settings.home.keyring, _passphrase(settings))
    keyid = verification_method_id(keys.owner_did)
    with signed_client(keys.owner_key, keyid, base_url=url, timeout=600) as http:
        yield RemoteOwner(http)


def _done(result):
    """A result, awaited when the local owner answered with a coroutine (network calls)."""
    return asyncio.run(result) if inspect.iscoroutine(result) else result


@grants.command("add")
@click.argument("did")
@click.option("--allow", "allow", multiple=True, required=True, help="An operation: ask, chat, send, tool:NAME (repeatable).")
@click.option("--tags", "tags", default=None, help="Comma-separated vault tags the DID's questions may draw on (default: none).")
@click.option("--quota", default=None, help="Requests allowed per window, e.g. 20/day or 5/hour.")
@click.option("--note", default="", help="A note to yourself: who this is.")
@click.pass_obj
def grants_add(settings: Settings, did: str, allow: tuple[str, ...], tags: str | None, quota: str | None, note: str) -> None:
    grant = {
        "did": did,
        "allow": sorted({a for part in allow for a in part.split(",") if a}),
        "tags": sorted({t.strip() for t in tags.split(",") if t.strip()}) if tags is not None else [],
        "quota": quota,
        "note": note,
        "created_at": time.time(),
    }
    with _owner(settings) as owner:
        owner.add_grant(grant)
    out.print(f"granted {did}: {', '.join(grant['allow'])}; tags {', '.join(grant['tags']) or '(none)'}; quota {quota or 'none'}")


@grants.command("list")
@click.pass_obj
def grants_list(settings: Settings) -> None:
    with _owner(settings) as owner:
        found = owner.list_grants()
    if not found:
        out.print("no grants yet; only you can use this node")
    for grant in found:
        tags = "all" if grant["tags"] is None else ", ".join(grant["tags"]) or "(none)"
        out.print(f"{grant['did']}  allow {', '.join(grant['allow'])}  tags {tags}  quota {grant['quota'] or 'none'}  {grant['note']}")


@grants.command("remove")
@click.argument("did")
@click.pass_obj
def grants_remove(settings: Settings, did: str) -> None:
    with _owner(settings) as owner:
        if not owner.remove_grant(did):
            raise click.ClickException(f"no grant for {did}")
    out.print(f"removed the grant of {did}")


@cli.group()
def tokens() -> None:
    """Bearer tokens for your own local apps (the OpenAI-compatible /v1 API)."""


@tokens.command("create")
@click.argument("name")
@click.option("--allow", "allow", multiple=True, default=("chat",), show_default=True)
@click.pass_obj
def tokens_create(settings: Settings, name: str, allow: tuple[str, ...]) -> None:
    with _owner(settings) as owner:
        token = owner.create_token(name, sorted(set(allow)))
    err.print(f"token for {name} (shown once; keep it like a password):")
    click.echo(token)


@tokens.command("list")
@click.pass_obj
def tokens_list(settings: Settings) -> None:
    with _owner(settings) as owner:
        for info in owner.list_tokens():
            out.print(f"{info['name']}  allow {', '.join(info['allow'])}")


@tokens.command("revoke")
@click.argument("name")
@click.pass_obj
def tokens_revoke(settings: Settings, name: str) -> None:
    with _owner(settings) as owner:
        if not owner.revoke_token(name):
            raise click.ClickException(f"no token named {name}")
    out.print(f"revoked {name}")


@cli.group()
def audit() -> None:
    """The signed, hash-chained log of everything the node did outward on your behalf."""


@audit.command("verify")
@click.pass_obj
def audit_verify(settings: Settings) -> None:
    with _owner(settings) as owner:
        report = owner.verify_audit()
    for problem in report["problems"]:
        out.print(f"  {problem}", markup=False)
    if not report["ok"]:
        raise click.ClickException(f"the audit log does NOT verify ({len(report['problems'])} problems in {report['count']} entries)")
    out.print(f"the audit log verifies: {report['count']} entries, every hash and signature checked")


@cli.group()
def peers() -> None:
    """Other flurry nodes (A2A agents) this node talks to, pinned by the DID that signs their card."""


@peers.command("add")
@click.argument("url")
@click.option("--name", default="", help="A short name to send to it by (default: its DID).")
@click.pass_obj
def peers_add(settings: Settings, url: str, name: str) -> None:
    """Fetch a node's agent card, check its signature and pin the DID that signed it."""
    with _owner(settings) as owner:
        peer = _done(owner.add_peer(url, name))
    out.print(f"pinned {peer['did']} for {peer['url']}" + (f" as {name}" if name else ""), markup=False)
    out.print(f"  {peer['card_name']}: {peer['card_description']}", style="dim", markup=False)
    if peer.get("nostr"):
        out.print(f"  Nostr key {peer['nostr']} (proven by the card): flurry nostr send works too", style="dim", markup=False)


@peers.command("list")
@click.pass_obj
def peers_list(settings: Settings) -> None:
    """The pinned peers: name, DID, URL."""
    with _owner(settings) as owner:
        found = owner.list_peers()
    if not found:
        out.print("no peers yet; add one with `flurry peers add URL --name NAME`")
    for peer in found:
        out.print(f"{peer['name'] or '-':<16} {peer['did']}  {peer['url']}", markup=False)


@cli.command()
@click.argument("peer")
@click.argument("text")
@click.pass_obj
def send(settings: Settings, peer: str, text: str) -> None:
    """Ask a pinned peer (by name, DID or URL); signed by this node, recorded in the audit log."""
    with _owner(settings) as owner:
        reply = _done(owner.send(peer, text))
    click.echo(reply["text"])


@cli.group()
def pod() -> None:
    """Your pod (/pod/ on the node): what is in it, and who may read or write where."""


@pod.command("ls")
@click.argument("path", default="/pod/")
@click.pass_obj
def pod_ls(settings: Settings, path: str) -> None:
    """The members of a container (or one resource): path, media type, size."""
    with _owner(settings) as owner:
        found = owner.pod_list(path)
    if not found:
        out.print(f"{path} is empty")
    for entry in found:
        out.print(f"{entry['path']}  {entry['type'] or 'container'}  {entry['size']} bytes" if entry["type"] else entry["path"], markup=False)


@pod.command("grant")
@click.argument("who")
@click.argument("container")
@click.argument("modes", nargs=-1, required=True)
@click.pass_obj
def pod_grant(settings: Settings, who: str, container: str, modes: tuple[str, ...]) -> None:
    """WHO (a DID, or 'public') may use MODES (read, append, write, control; or none) on
    CONTAINER and below, until a rule further down says otherwise."""
    chosen = [] if modes == ("none",) else sorted({m for part in modes for m in part.split(",") if m})
    with _owner(settings) as owner:
        owner.set_pod_access(who, container, chosen)
    out.print(f"{who} on {container}: {' '.join(chosen) or 'nothing'}", markup=False)


@pod.command("revoke")
@click.argument("who")
@click.argument("container")
@click.pass_obj
def pod_revoke(settings: Settings, who: str, container: str) -> None:
    """Drop WHO's rule on CONTAINER: the rule above it (if any) applies again."""
    with _owner(settings) as owner:
        owner.set_pod_access(who, container, None)
    out.print(f"dropped the rule of {who} on {container}", markup=False)


@pod.command("access")
@click.pass_obj
def pod_access(settings: Settings) -> None:
    """Every pod access rule: who, where, which modes."""
    with _owner(settings) as owner:
        rules = owner.pod_access()
    lines = [("public", c, m) for c, m in rules["public"].items()]
    lines += [(did, c, m) for did, found in rules["grants"].items() for c, m in found.items()]
    if not lines:
        out.print("no pod access given; only you can use your pod")
    for who, container, modes in sorted(lines, key=lambda line: (line[1], line[0])):
        out.print(f"{container}  {who}  {' '.join(modes) or 'nothing'}", markup=False)


@cli.group()
def skills() -> None:
    """Skills: install them like apps, see what they ask for, grant it, use them from ask."""


@skills.command("install")
@click.argument("source")
@click.option("--yes", is_flag=True, help="Approve every permission the skill asks for, without asking.")
@click.pass_obj
def skills_install(settings: Settings, source: str, yes: bool) -> None:
    """Install a skill from a wheel, a project folder or a pip requirement; review what it asks
    for, then approve."""
    with _owner(settings) as owner:
        skill = owner.install_skill(source)
        _show_skill(skill)
        if not (yes or (sys.stdin.isatty() and click.confirm("Approve these permissions and enable it?", err=True))):
            owner.remove_skill(skill["name"])
            raise click.ClickException(f"not approved; {skill['name']} was removed again")
        owner.approve_skill(skill["name"], skill["requested"])
    out.print(f"installed {skill['name']}; its tools default to `ask` (flurry skills policy TOOL allow|ask|deny)")


def _show_skill(skill: dict) -> None:
    if skill["managed"]:
        out.print(f"{skill['name']} {skill['version']} — {skill['description']}", markup=False)
        out.print(f"  author: {skill['author'] or '(not given)'}" + ("  (signed)" if skill["signed"] else ""), markup=False)
    else:
        out.print(f"{skill['name']}: {skill['description']} (not sandboxed, nothing brokered)", markup=False)
    for tool in skill["tools"]:
        out.print(f"  tool {tool['name']} [{tool['policy']}]: {tool['description']}", markup=False)
    if "sandbox" in skill:
        out.print(f"  sandbox: {skill['sandbox']}", markup=False)
    for permission in skill["requested"]:
        state = "granted" if permission in skill["granted"] else "asks for" if not skill["approved"] else "asked, not granted"
        out.print(f"  {state}: {permission}", markup=False)


@skills.command("install-mcp", context_settings={"ignore_unknown_options": True})
@click.option("--yes", is_flag=True, help="Register it without asking, once its tools are listed.")
@click.argument("name")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def skills_install_mcp(settings: Settings, yes: bool, name: str, argv: tuple[str, ...]) -> None:
    """Register any stdio MCP server: flurry skills install-mcp NAME -- COMMAND ARGS…
    It is started once to list its tools; review them, then approve."""
    with _owner(settings) as owner:
        skill = owner.install_mcp(name, list(argv))
        _show_skill(skill)
        out.print("  it runs with your permissions: nothing is brokered or sandboxed", markup=False)
        if not (yes or (sys.stdin.isatty() and click.confirm("Register this server and enable its tools?", err=True))):
            owner.remove_skill(name)
            raise click.ClickException(f"not approved; {name} was removed again")
        owner.approve_skill(name, [])
    out.print(f"registered {name}; its tools default to `ask` (flurry skills policy TOOL allow|ask|deny)")


@skills.command("list")
@click.pass_obj
def skills_list(settings: Settings) -> None:
    with _owner(settings) as owner:
        found = owner.list_skills()
    if not found:
        out.print("no skills installed; flurry skills install PATH")
    for skill in found:
        state = "enabled" if skill["enabled"] and skill["approved"] else "disabled" if skill["approved"] else "not approved"
        kind = "" if skill["managed"] else " (unmanaged MCP)"
        out.print(f"{skill['name']:<20} {state}{kind}", markup=False)


@skills.command("info")
@click.argument("name")
@click.pass_obj
def skills_info(settings: Settings, name: str) -> None:
    with _owner(settings) as owner:
        _show_skill(owner.skill(name))


@skills.command("enable")
@click.argument("name")
@click.pass_obj
def skills_enable(settings: Settings, name: str) -> None:
    with _owner(settings) as owner:
        owner.enable_skill(name)
    out.print(f"enabled {name}")


@skills.command("disable")
@click.argument("name")
@click.pass_obj
def skills_disable(settings: Settings, name: str) -> None:
    with _owner(settings) as owner:
        owner.disable_skill(name)
    out.print(f"disabled {name}")


@skills.command("remove")
@click.argument("name")
@click.pass_obj
def skills_remove(settings: Settings, name: str) -> None:
    with _owner(settings) as owner:
        owner.remove_skill(name)
    out.print(f"removed {name}")


@skills.command("policy")
@click.argument("tool")
@click.argument("decision", type=click.Choice(["allow", "ask", "deny"]))
@click.pass_obj
def skills_policy(settings: Settings, tool: str, decision: str) -> None:
    """Whether a tool runs unasked (allow), after you approve its arguments (ask), or never (deny)."""
    with _owner(settings) as owner:
        owner.set_tool_policy(tool, decision)
    out.print(f"{tool}: {decision}")


@cli.command()
@click.option("--approve", "approve_id", metavar="ID", help="Let the waiting tool call ID run.")
@click.option("--deny", "deny_id", metavar="ID", help="Refuse the waiting tool call ID.")
@click.pass_obj
def approvals(settings: Settings, approve_id: str | None, deny_id: str | None) -> None:
    """Tool calls waiting for your yes or no (asked for over the API, by the TUI or a script)."""
    with _owner(settings) as owner:
        if approve_id or deny_id:
            owner.decide_approval(approve_id or deny_id, "approve" if approve_id else "deny")
            out.print(f"{'approved' if approve_id else 'denied'} {approve_id or deny_id}")
            return
        waiting = owner.list_approvals()
    if not waiting:
        out.print("nothing is waiting for you")
    for pending in waiting:
        out.print(f"{pending['id']}  {pending['skill']}.{pending['tool']}  from {pending['requester']}", markup=False)
        out.print("  " + json.dumps(pending["arguments"], ensure_ascii=False), markup=False)


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """List the models: the defaults, the catalog to pull from, what is here, what is in use."""
    if ctx.invoked_subcommand:
        return
    from agent.pull import read_record

    settings: Settings = ctx.obj
    config = settings.home.load_config()
    chosen = (config.chat_model, config.embedding_model)
    folder = settings.home.models
    for model, path in installed_models(folder):
        state = f"fetched  {path}" if path else "not fetched (fetched on first use)"
        out.print(f"{'*' if model.name in chosen else ' '} {model.name:<28} {model.kind:<9} {state}", markup=False)
        out.print(f"    {model.description}", markup=False)
    out.print("Catalog (flurry models pull NAME; `flurry models recommend` says what fits):")
    for model in HUB_CATALOG.values():
        path = folder / model.filename
        state = "pulled" if path.is_file() else "not pulled"
        pin = f"sha256 {model.sha256[:12]}…" if model.sha256 else "unpinned"
        out.print(f"{'*' if model.name in chosen else ' '} {model.name:<28} chat      {state}; {model.size_gb:.1f} GB, "
                  f"~{model.ram_gb:.1f} GB RAM, context {model.context}; {pin}", markup=False)
        out.print(f"    {model.description}  ({model.source})", markup=False)
    hub_files = {m.filename for m in HUB_CATALOG.values()}
    here = other_models(folder)
    if here:
        out.print(f"In {folder}:")
    for path in here:
        record = read_record(path) or {}
        in_use = path.name in chosen or str(path) in chosen or any(
            HUB_CATALOG[c].filename == path.name for c in chosen if c in HUB_CATALOG)
        name = path.name if path.name not in hub_files else f"{path.name} ({next(m.name for m in HUB_CATALOG.values() if m.filename == path.name)})"
        out.print(f"{'*' if in_use else ' '} {name}  {_size(path.stat().st_size)}  sha256 {record.get('sha256', 'not recorded (not pulled by flurry)')}", markup=False)
        if record:
            out.print(f"    from {record.get('source')}  ({record.get('checked')}, {record.get('pulled')})", markup=False)
    for kind, name in (("chat", config.chat_model), ("embedding", config.embedding_model)):
        if name not in CATALOG and name not in HUB_CATALOG and not (folder / name).is_file():
            out.print(f"* {name}  ({kind}, your own GGUF)", markup=False)


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


@models.command("fetch")
@click.argument("names", nargs=-1)
@click.pass_obj
def models_fetch(settings: Settings, names: tuple[str, ...]) -> None:
    """Fetch default models now (default: the configured ones)."""
    config = settings.home.load_config()
    for name in names or (config.chat_model, config.embedding_model):
        path = resolve_model(name, settings.home.models, say=lambda line: err.print(line))
        out.print(f"{name}: {path}")


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text.upper())
    if not match:
        raise click.BadParameter(f"{text!r}: a size such as 800M or 4G", param_hint="--max-size")
    return int(float(match[1]) * 1000 ** ("_KMGT".index(match[2]) if match[2] else 0))


@models.command("pull")
@click.argument("source")
@click.option("--name", help="The file name in the models folder (default: the URL's).")
@click.option("--sha256", "sha256", metavar="HEX", help="The digest the publisher gives: refuse and delete the file if it differs.")
@click.option("--max-size", default="64G", show_default=True, help="Refuse a file larger than this (e.g. 4G).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the server before giving up (the pull can be resumed).")
@click.pass_obj
def models_pull(settings: Settings, source: str, name: str | None, sha256: str | None, max_size: str, timeout: float) -> None:
    """Download a GGUF chat model: a catalog name, hf:OWNER/REPO/FILE.gguf[@REV] or an https:// URL.

    Run it again after an interruption: it continues where it stopped. Needs no passphrase and
    works while `flurry serve` runs (the models folder is not part of the sealed home)."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from agent.pull import pull, resolve_source

    label = resolve_source(source, name, sha256).filename  # refuses a bad source before anything is drawn
    if settings.home.models.is_relative_to(settings.home.root) and not settings.home.root.exists():
        # the models folder is the first thing in a new home: the home stays private, as `init` makes it
        settings.home.root.mkdir(parents=True, mode=0o700)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=err, transient=False)
    task = None

    def progress(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task(label, total=total, completed=done)
        bar.update(task, completed=done, total=total)

    with bar:
        pulled = pull(source, settings.home.models, name=name, sha256=sha256, max_bytes=_parse_size(max_size),
                      timeout=timeout, progress=progress, say=lambda line: err.print(line, markup=False))
    label = pulled.source if pulled.source in HUB_CATALOG else pulled.path.name
    if pulled.already:
        out.print(f"already pulled: {pulled.path}", markup=False)
    else:
        resumed = f", resumed after {_size(pulled.resumed_at)}" if pulled.resumed_at else ""
        out.print(f"pulled {pulled.path} ({_size(pulled.size)}{resumed})", markup=False)
    out.print(f"sha256 {pulled.sha256}  ({pulled.checked})", markup=False)
    out.print(f"use it: flurry models use chat {label}", markup=False)


@models.command("recommend")
def models_recommend() -> None:
    """Which catalog models fit this machine (cores, memory, GPU), and the command to get one."""
    from agent.recommend import describe, probe, recommend

    machine = probe()
    fits, best = recommend(machine)
    out.print(f"This machine: {describe(machine)}", markup=False)
    marks = {"gpu": "+", "good": "+", "slow": "~", "tight": "~", "no": "-"}
    for f in fits:
        out.print(f"{marks[f.verdict]} {f.model.name:<24} {f.model.size_gb:.1f} GB  {f.reason}", markup=False)
    if best is None:
        out.print("None of the catalog models runs comfortably here; the default model keeps answering.", markup=False)
        return
    out.print(f"Recommended: {best.model.name} ({best.model.description})", markup=False)
    out.print(f"  flurry models pull {best.model.name} && flurry models use chat {best.model.name}", markup=False)


@models.command("use")
@click.argument("kind", type=click.Choice(["chat", "embedding"]))
@click.argument("model")
@click.pass_obj
def models_use(settings: Settings, kind: str, model: str) -> None:
    """Use a default or pulled model, a file in the models folder, or your own GGUF file."""
    settings.home.require()
    folder = settings.home.models
    if model in HUB_CATALOG:
        resolve_model(model, folder)  # refuses a model not pulled yet, with the command that pulls it
    elif model not in CATALOG:
        path = Path(model).expanduser().absolute()
        if path.is_file():
            model = str(path)
        elif "/" not in model and (folder / model).is_file():
            pass  # a pulled file, named as it is in the models folder (which FLURRY_MODELS may move)
        else:
            known = ", ".join([*CATALOG, *HUB_CATALOG])
            raise click.ClickException(f"{model}: no such GGUF file, not in {folder}, and not a catalog name ({known})")
    config = settings.home.load_config()
    setattr(config, f"{kind}_model", model)
    settings.home.save_config(config)
    out.print(f"{kind} model: {model}", markup=False)
    if settings.home.running_node():
        out.print("flurry serve is running: restart it to load the new model", markup=False)


@contextmanager
def _nostr_owner(settings: Settings) -> Iterator:
    """The owner's Nostr calls: on the home itself, or through the node serving it."""
    from node.nostr_owner import LocalNostrOwner, RemoteNostrOwner

    with _owner(settings) as owner:
        yield LocalNostrOwner(owner.node) if isinstance(owner, LocalOwner) else RemoteNostrOwner(owner)


@cli.group(invoke_without_command=True)
@click.pass_context
def nostr(ctx: click.Context) -> None:
    """Private messages over Nostr (NIP-17 gift wraps) through the relays you configure."""
    if ctx.invoked_subcommand:
        return
    with _nostr_owner(ctx.obj) as owner:
        info = owner.whoami()
    out.print(f"Nostr key  {info['npub']}  ({info['pubkey']})", markup=False)
    out.print(f"relays     {', '.join(info['relays']) or '(none: flurry nostr relays add wss://…)'}", markup=False)
    if info["running"]:
        out.print(f"listening  received {info['received']}, answered {info['answered']}, to the inbox {info['to_inbox']}, refused {info['rejected']}, dropped {info['dropped']}, sent {info['sent']}")


@nostr.group("relays", invoke_without_command=True)
@click.pass_context
def nostr_relays(ctx: click.Context) -> None:
    """The relays the node reads and writes messages through (it connects to no others)."""
    if ctx.invoked_subcommand:
        return
    ctx.invoke(nostr_relays_list)


@nostr_relays.command("list")
@click.pass_obj
def nostr_relays_list(settings: Settings) -> None:
    with _nostr_owner(settings) as owner:
        found = owner.list_relays()
    if not found:
        out.print("no relays; add one with `flurry nostr relays add wss://…`")
    for url in found:
        out.print(url, markup=False)


@nostr_relays.command("add")
@click.argument("url")
@click.pass_obj
def nostr_relays_add(settings: Settings, url: str) -> None:
    with _nostr_owner(settings) as owner:
        url = owner.add_relay(url)
    out.print(f"added {url}", markup=False)


@nostr_relays.command("remove")
@click.argument("url")
@click.pass_obj
def nostr_relays_remove(settings: Settings, url: str) -> None:
    with _nostr_owner(settings) as owner:
        if not owner.remove_relay(url):
            raise click.ClickException(f"no relay {url}")
    out.print(f"removed {url}", markup=False)


@nostr.command("send")
@click.argument("peer")
@click.argument("text")
@click.pass_obj
def nostr_send(settings: Settings, peer: str, text: str) -> None:
    """Send a private message to a pinned peer or an npub; signed by this node, recorded in the audit log."""
    with _nostr_owner(settings) as owner:
        sent = owner.send(peer, text)
    out.print(f"sent {sent['event_id']} to {sent['to']} via {', '.join(sent['relays'])}", markup=False)
    for url, why in sent["failed"].items():
        err.print(f"  {url} refused it: {why}", markup=False)


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the messages as one JSON list.")
@click.pass_context
def inbox(ctx: click.Context, as_json: bool) -> None:
    """Messages waiting for you: from strangers, from peers without a grant, and peers' replies."""
    if ctx.invoked_subcommand:
        return
    with _nostr_owner(ctx.obj) as owner:
        messages = owner.inbox()
    if as_json:
        click.echo(json.dumps(messages))
        return
    if not messages:
        out.print("the inbox is empty")
    for m in messages:
        sender = m["peer_did"] or m["npub"]
        sent = time.strftime("%Y-%m-%d %H:%M", time.localtime(m["sent_at"]))
        out.print(f"{m['message_id'][:12]}  {sent}  from {sender}  ({m['why']})", markup=False)
        out.print(f"  {m['text']}", markup=False)


@inbox.command("remove")
@click.argument("message_id")
@click.pass_obj
def inbox_remove(settings: Settings, message_id: str) -> None:
    """Delete a message from the inbox (by the id `flurry inbox` shows, or its full id)."""
    with _nostr_owner(settings) as owner:
        matches = [m for m in owner.inbox() if m["message_id"].startswith(message_id) or m["id"] == message_id]
        if len(matches) != 1:
            raise click.ClickException(f"{'no' if not matches else 'more than one'} message {message_id!r} in the inbox")
        owner.remove_from_inbox(matches[0]["message_id"])
    out.print(f"removed {matches[0]['message_id']}")


def main() -> None:
    cli(prog_name="flurry")


if __name__ == "__main__":
    main()
