"""Asking: ask, chat and the terminal app (tui), in this process or through the node serving the home."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from agent.answer import answer_events
from agent.citations import citation
from agent.tools import ToolCall, ToolTurn
from node.cli.common import (
    Settings,
    _keys,
    _on_terminal,
    _open_node,
    err,
    out,
)
from node.client import NodeClient
from node.node import OWNER_QUESTION, Node


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
        yield from answer_events(answer, owner=True)  # the same events /api/ask gives the owner


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
            err.print(
                f"(no terminal to ask you; `flurry skills policy {call.tool} allow` lets it run unasked)",
                markup=False,
            )
        return False
    return click.confirm("Run it?", default=False, err=True)


def _tool_events(turn: ToolTurn) -> Iterator[dict]:
    assert turn.call is not None and turn.decision is not None
    text = turn.result if turn.ran else f"(not run: {turn.decision.reason})"
    yield {
        "type": "tool",
        "tool": turn.call.tool,
        "arguments": turn.call.arguments,
        "ran": turn.ran,
        "reason": turn.decision.reason,
    }
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
        for event in self._client.ask(
            question, self._k, conversation=self._conversation_id, tools=True
        ):
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
    client = NodeClient(url, _keys(settings))
    try:
        yield RemoteAsker(client, k)
    finally:
        client.close()


@click.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: answer and sources.")
@click.option(
    "-k", "k", default=3, show_default=True, help="How many chunks to read before answering."
)
@click.pass_obj
def ask(settings: Settings, question: str, as_json: bool, k: int) -> None:
    """Ask one question; the answer streams, with numbered sources."""
    if (
        not question.strip()
    ):  # said here, before the home is opened, as the answer path would say it
        raise click.ClickException("the question is empty")
    with _asker(settings, k) as asker:
        if as_json:
            events = list(asker.ask(question))
            done = next(e for e in events if e["type"] == "done")
            # The sources the answer ended with (their quotes are what it rests on).
            sources = done.get(
                "sources", next(e["sources"] for e in events if e["type"] == "sources")
            )
            tool = next(
                (
                    {k: v for k, v in e.items() if k != "type"}
                    for e in events
                    if e["type"] == "tool"
                ),
                None,
            )
            click.echo(
                json.dumps(
                    {
                        "answer": done["answer"],
                        "grounded": bool(done.get("grounded", False)),
                        "sources": sources,
                        **({"tool": tool} if tool else {}),
                        **({"model": done["model"]} if done.get("model") else {}),
                    }
                )
            )
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
            if event.get("model"):  # a remote model wrote it, or the local one stood in
                err.print(f"(answered by {event['model']})", style="dim", markup=False)
    sys.stdout.write("\n")
    for sentence in dropped:
        out.print(
            f"  ✗ not in your data, not shown as the answer: {sentence}",
            style="dim strike",
            markup=False,
        )
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


@click.command()
@click.pass_obj
def tui(settings: Settings) -> None:
    """The terminal app: chat, your data, skills, approvals and identity in one place."""
    # Lazy: uvicorn, the HTTP app and Textual load only for the app, not for every command.
    from node.tui_launch import run_tui

    run_tui(settings.home, lambda: _keys(settings), say=lambda line: err.print(line))


@click.command()
@click.option(
    "--plain",
    is_flag=True,
    help="The line-by-line chat, even on a terminal (for scripts and dumb terminals).",
)
@click.pass_obj
def chat(settings: Settings, plain: bool) -> None:
    """Chat with your node; it remembers the conversation. /new starts over, /quit (or Ctrl-D) leaves.

    On a terminal this opens the terminal app; --plain (or no terminal) keeps the line chat."""
    if not plain and _on_terminal():
        from node.tui_launch import run_tui  # lazy, as in `tui`

        run_tui(settings.home, lambda: _keys(settings), say=lambda line: err.print(line))
        return
    with _asker(settings, 3) as asker:
        out.print(
            "Ask about your notes. /new starts a new conversation, /quit leaves.", style="dim"
        )
        while True:
            try:
                line = click.prompt(
                    "you", prompt_suffix="> ", default="", show_default=False, err=True
                )
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


COMMANDS = (ask, chat, tui)
