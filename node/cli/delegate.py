"""Delegating work to other agents (issue 18): `flurry delegate "TASK"`.

The buyer's round (node.contracts_buyer): a cfp to each chosen pinned peer, the bids shown
as they arrive (a live table), the award by the rule or by the owner's choice, the result
verified and the whole conversation kept sealed. `--json` for scripts."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from agent.contract_net import Checked
from node.cli.common import Settings, _done, _open_node, _owner, out
from node.contracts_buyer import PICKS, Delegation
from node.contracts_buyer import delegate as run_delegate
from node.errors import OwnerError
from node.peers import list_peers

POLL_SECONDS = 0.3  # how often the live table asks the serving node


def _seconds(value: str) -> int:
    found = re.fullmatch(r"(\d+)\s*(s|m)?", value.strip())
    if not found:
        raise click.BadParameter("a duration like 60s or 2m")
    return int(found[1]) * (60 if found[2] == "m" else 1)


def _table(peers: dict[str, dict[str, Any]]) -> Table:
    """The live table of a round: each peer's answer as it arrives (Delegation.peers)."""
    table = Table(title="bids")
    for column in ("#", "peer", "answer", "price", "expected"):
        table.add_column(column)
    for number, (peer, row) in enumerate(peers.items(), 1):
        answer = row["answer"]
        if answer == "refused":
            answer = f"refused: {row['reason']}"[:60]
        elif answer == "error":
            answer = f"error: {row['error']}"[:60]
        price = row.get("price")
        table.add_row(
            str(number),
            peer,
            answer,
            f"{price['amount']} {price['unit']}" if price else "",
            f"{row['expected_seconds']} s" if "expected_seconds" in row else "",
        )
    return table


def _ask_owner(bids: list[dict[str, Any]]) -> int | None:
    """The owner's pick at the terminal: a bid's number (its index), or None for nobody."""
    for number, bid in enumerate(bids, 1):
        out.print(
            f"{number}. {bid['peer']}: {bid['price']['amount']} {bid['price']['unit']}, "
            f"{bid['expected_seconds']} s",
            markup=False,
        )
    number = click.prompt("award to # (0: none)", type=click.IntRange(0, len(bids)), default=1)
    return number - 1 if number > 0 else None


@click.command()
@click.argument("task")
@click.option("--to", "to", multiple=True, help="A pinned peer (name or DID); repeat for more.")
@click.option("--all-granted", is_flag=True, help="Every pinned peer.")
@click.option("--budget", type=click.IntRange(0, 10**12), default=100, show_default=True)
@click.option("--unit", type=click.Choice(["credits", "tokens"]), default="credits")
@click.option("--deadline", default="60s", show_default=True, help="The bidding window.")
@click.option("--pick", type=click.Choice(PICKS), default="cheapest", show_default=True)
@click.option(
    "--kind",
    default="answer",
    show_default=True,
    help="answer (from their data), infer (their model alone), or tool:NAME (one call of "
    "their tool NAME: TASK is its arguments as a JSON object).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def delegate(
    settings: Settings,
    task: str,
    to: tuple[str, ...],
    all_granted: bool,
    budget: int,
    unit: str,
    deadline: str,
    pick: str,
    kind: str,
    as_json: bool,
) -> None:
    """Delegate TASK to pinned peers: a call for proposals, their signed bids (a live table),
    an award by the rule or your pick, a verified result. Through the node when it serves."""
    seconds = _seconds(deadline)
    if settings.home.running_node() is not None:
        with _owner(settings) as owner:
            peers = list(to) or ([p["did"] for p in owner.list_peers()] if all_granted else [])
            started = _done(owner.start_delegation(task, peers, budget, unit, seconds, pick, kind))
            result = _watch(owner, started["conversation"], as_json)
        _show(result, as_json)
        return
    with _open_node(settings) as node:
        peers = list(to) or ([p.did for p in list_peers(node.vault)] if all_granted else [])
        watched = Delegation("", task, pick)
        with Live(_table(watched.peers), console=out, transient=as_json) as live:

            def on_event(kind: str, data: dict[str, Any]) -> None:
                watched.on_event(kind, data)
                live.update(_table(watched.peers))

            def choose(proposals: list[Checked]) -> int | None:
                live.stop()  # the prompt needs the terminal
                return _ask_owner(watched.bids)

            try:
                result = asyncio.run(
                    run_delegate(
                        node,
                        task,
                        peers,
                        budget=budget,
                        unit=unit,
                        deadline=seconds,
                        pick=pick,
                        kind=kind,
                        choose=choose,
                        on_event=on_event,
                    )
                )
            except OwnerError as error:
                raise click.ClickException(str(error)) from None
    _show(result, as_json)


def _watch(owner: Any, conversation: str, as_json: bool) -> dict[str, Any]:
    """Follow a round the serving node runs: the live table, the owner's pick when it waits
    for one, then its outcome."""
    with Live(_table({}), console=out, transient=as_json) as live:
        while True:
            view = _done(owner.delegation(conversation))
            live.update(_table(view["peers"]))
            if view["phase"] == "choosing":
                live.stop()
                index = _ask_owner(view["bids"])
                did = None if index is None else view["bids"][index]["did"]
                _done(owner.award_delegation(conversation, did))
                live.start()
            elif view["phase"] == "done":
                return view["outcome"]
            elif view["phase"] == "failed":
                raise click.ClickException(f"the delegation failed: {view['error']}")
            time.sleep(POLL_SECONDS)


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if result["winner"] is None:
        out.print(f"no award ({result['state']})", markup=False)
        return
    price = result["price"]
    out.print(
        f"awarded to {result['winner']} for {price['amount']} {price['unit']}: {result['state']}"
        + (" (late)" if result["late"] else ""),
        markup=False,
    )
    if result["text"]:
        click.echo(result["text"])
    if result["receipt"]:
        out.print(
            f"[dim]receipt {result['receipt']} checked; conversation {result['conversation']} verified and kept[/dim]"
        )


COMMANDS = (delegate,)
