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

from agent.answer import cited_numbers, citation
from agent.models import CATALOG, ModelError, installed_models, resolve_model
from agent.tools import ToolCall, ToolTurn
from identity.did_key import verification_method_id
from identity.keyring import Keyring, KeyringError
from identity.signing_client import signed_client
from node.client import NodeClient, NodeUnavailable
from node.home import Home, HomeError
from node.node import Node
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
def _open_node(settings: Settings) -> Iterator[Node]:
    settings.home.require()
    node = Node.open(settings.home, _passphrase(settings), say=lambda line: err.print(line))
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


@click.group(cls=FlurryGroup)
@click.option("--home", envvar="FLURRY_HOME", help="The node's home folder (default: your user data folder).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False), help="Read the passphrase from this file.")
@click.pass_context
def cli(ctx: click.Context, home: str | None, passphrase_file: str | None) -> None:
    """flurry: your personal AI node. Your data stays sealed at home; a local model answers from it."""
    ctx.obj = Settings(Home.from_env(home), passphrase_file)


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
        yield {"type": "done", "answer": answer.text}


def _ask_owner_at_terminal(call: ToolCall) -> bool:
    """The policy said "ask": show the tool and every argument, and take the owner's answer."""
    err.print(f"A skill wants to run {call.tool} with:", markup=False)
    err.print(json.dumps(call.arguments, indent=2, ensure_ascii=False), markup=False)
    if not sys.stdin.isatty():
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
        for event in self._client.ask(question, self._k, conversation=self._conversation_id):
            if event["type"] == "conversation":
                self._conversation_id = event["id"]
            yield event


@contextmanager
def _asker(settings: Settings, k: int) -> Iterator[LocalAsker | RemoteAsker]:
    url = settings.home.running_node()
    if url is None:
        with _open_node(settings) as node:
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
            sources = next(e["sources"] for e in events if e["type"] == "sources")
            answer = next(e["answer"] for e in events if e["type"] == "done")
            tool = next(({k: v for k, v in e.items() if k != "type"} for e in events if e["type"] == "tool"), None)
            click.echo(json.dumps({"answer": answer, "sources": sources, **({"tool": tool} if tool else {})}))
        else:
            _print_answer(asker.ask(question))


def _print_answer(events: Iterator[dict]) -> None:
    """Stream the tokens to the terminal, then the numbered sources."""
    sources: list[dict] = []
    answer = ""
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
            answer = event["answer"]
    sys.stdout.write("\n")
    if not sources:
        if not tool_ran:
            out.print("(no notes matched; add some with `flurry add PATH`)", style="dim")
        return
    cited = cited_numbers(answer)
    for number, s in enumerate(sources, start=1):
        mark = "*" if number in cited else " "
        cite = citation(s.get("meta") or {})
        where = f"{s['path']}: {cite}" if cite else f"{s['path']} (chunk {s['chunk']})"
        out.print(f"{mark}[{number}] {where} — {s['snippet'][:100]}", style="dim", markup=False)


@cli.command()
@click.pass_obj
def chat(settings: Settings) -> None:
    """Chat with your node; it remembers the conversation. /new starts over, /quit (or Ctrl-D) leaves."""
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
@click.pass_obj
def serve(settings: Settings, host: str, port: int) -> None:
    """Run the node: the signed API for your own clients, other agents and local apps."""
    from node.serve import serve as run_server

    with _open_node(settings) as node:
        run_server(node, host, port, say=lambda line: err.print(line))


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
def skills() -> None:
    """Skills: install them like apps, see what they ask for, grant it, use them from ask."""


@skills.command("install")
@click.argument("source", type=click.Path(exists=True))
@click.option("--yes", is_flag=True, help="Approve every permission the skill asks for, without asking.")
@click.pass_obj
def skills_install(settings: Settings, source: str, yes: bool) -> None:
    """Install a skill from a wheel or a project folder; review what it asks for, then approve."""
    with _open_node(settings) as node:
        manifest = node.skills.install(Path(source))
        out.print(f"{manifest.name} {manifest.version} — {manifest.description}", markup=False)
        out.print(f"  author: {manifest.author_did or '(not given)'}" + ("  (signed)" if manifest.signature else ""), markup=False)
        for tool in manifest.tools:
            out.print(f"  tool {tool.name}: {tool.description}", markup=False)
        for permission in manifest.permissions:
            out.print(f"  asks for: {permission}", markup=False)
        if not (yes or (sys.stdin.isatty() and click.confirm("Approve these permissions and enable it?", err=True))):
            node.skills.remove(manifest.name)
            raise click.ClickException(f"not approved; {manifest.name} was removed again")
        node.skills.approve(manifest.name, list(manifest.permissions))
    out.print(f"installed {manifest.name}; its tools default to `ask` (flurry skills policy TOOL allow|ask|deny)")


@skills.command("install-mcp", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def skills_install_mcp(settings: Settings, name: str, argv: tuple[str, ...]) -> None:
    """Register any stdio MCP server: flurry skills install-mcp NAME -- COMMAND ARGS…"""
    with _open_node(settings) as node:
        node.skills.install_mcp(name, list(argv))
    out.print(f"registered {name} (unmanaged: it runs with your permissions, nothing is brokered or sandboxed)")


@skills.command("list")
@click.pass_obj
def skills_list(settings: Settings) -> None:
    with _open_node(settings) as node:
        found = node.skills.list()
    if not found:
        out.print("no skills installed; flurry skills install PATH")
    for info in found:
        state = "enabled" if info.enabled and info.approved else "disabled" if info.approved else "not approved"
        kind = "" if info.managed else " (unmanaged MCP)"
        out.print(f"{info.name:<20} {state}{kind}", markup=False)


@skills.command("info")
@click.argument("name")
@click.pass_obj
def skills_info(settings: Settings, name: str) -> None:
    with _open_node(settings) as node:
        info = node.skills.info(name)
        policy = node.tool_policy()
    if info.manifest:
        out.print(f"{info.name} {info.manifest.version} — {info.manifest.description}", markup=False)
        out.print(f"  author: {info.manifest.author_did or '(not given)'}", markup=False)
        for tool in info.manifest.tools:
            out.print(f"  tool {tool.name} [{policy.rule(tool.name)}]: {tool.description}", markup=False)
    else:
        out.print(f"{info.name}: unmanaged MCP server: {' '.join(info.argv)}", markup=False)
    for permission in info.requested:
        out.print(f"  {'granted' if permission in info.granted else 'asked, not granted'}: {permission}", markup=False)


@skills.command("enable")
@click.argument("name")
@click.pass_obj
def skills_enable(settings: Settings, name: str) -> None:
    with _open_node(settings) as node:
        node.skills.enable(name)
    out.print(f"enabled {name}")


@skills.command("disable")
@click.argument("name")
@click.pass_obj
def skills_disable(settings: Settings, name: str) -> None:
    with _open_node(settings) as node:
        node.skills.disable(name)
    out.print(f"disabled {name}")


@skills.command("remove")
@click.argument("name")
@click.pass_obj
def skills_remove(settings: Settings, name: str) -> None:
    with _open_node(settings) as node:
        node.skills.remove(name)
    out.print(f"removed {name}")


@skills.command("policy")
@click.argument("tool")
@click.argument("decision", type=click.Choice(["allow", "ask", "deny"]))
@click.pass_obj
def skills_policy(settings: Settings, tool: str, decision: str) -> None:
    """Whether a tool runs unasked (allow), after you approve its arguments (ask), or never (deny)."""
    with _open_node(settings) as node:
        node.set_tool_policy(tool, decision)
    out.print(f"{tool}: {decision}")


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """List the models: the catalog, what is fetched, what is configured."""
    if ctx.invoked_subcommand:
        return
    settings: Settings = ctx.obj
    config = settings.home.load_config()
    for model, path in installed_models(settings.home.models):
        in_use = model.name in (config.chat_model, config.embedding_model)
        state = f"fetched  {path}" if path else "not fetched (fetched on first use)"
        out.print(f"{'*' if in_use else ' '} {model.name:<28} {model.kind:<9} {state}")
        out.print(f"    {model.description}")
    for kind, chosen in (("chat", config.chat_model), ("embedding", config.embedding_model)):
        if chosen not in CATALOG:
            out.print(f"* {chosen}  ({kind}, your own GGUF)")


@models.command("fetch")
@click.argument("names", nargs=-1)
@click.pass_obj
def models_fetch(settings: Settings, names: tuple[str, ...]) -> None:
    """Fetch catalog models now (default: the configured ones)."""
    config = settings.home.load_config()
    for name in names or (config.chat_model, config.embedding_model):
        path = resolve_model(name, settings.home.models, say=lambda line: err.print(line))
        out.print(f"{name}: {path}")


@models.command("use")
@click.argument("kind", type=click.Choice(["chat", "embedding"]))
@click.argument("model")
@click.pass_obj
def models_use(settings: Settings, kind: str, model: str) -> None:
    """Use a catalog model or your own GGUF file for chat or embeddings."""
    settings.home.require()
    if model not in CATALOG:
        path = Path(model).expanduser().absolute()
        if not path.is_file():
            raise click.ClickException(f"{model}: no such GGUF file, and not a catalog name ({', '.join(CATALOG)})")
        model = str(path)
    config = settings.home.load_config()
    setattr(config, f"{kind}_model", model)
    settings.home.save_config(config)
    out.print(f"{kind} model: {model}")


def main() -> None:
    cli(prog_name="flurry")


if __name__ == "__main__":
    main()
