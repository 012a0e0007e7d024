"""Delegating work to other agents (issue 18): `flurry delegate "TASK"`.

The buyer's round (node.contracts_buyer): a cfp to each chosen pinned peer, the bids shown
as they arrive (a live table), the award by the rule or by the owner's choice, the result
verified and the whole conversation kept sealed. `--json` for scripts."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from agent.contract_net import Checked
from node.cli.common import Settings, _done, _open_node, _owner, out
from node.contracts_buyer import PICKS
from node.contracts_buyer import delegate as run_delegate
from node.errors import OwnerError
from node.peers import list_peers


def _seconds(value: str) -> int:
    found = re.fullmatch(r"(\d+)\s*(s|m)?", value.strip())
    if not found:
        raise click.BadParameter("a duration like 60s or 2m")
    return int(found[1]) * (60 if found[2] == "m" else 1)


def _table(rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="bids")
    for column in ("#", "peer", "answer", "price", "expected"):
        table.add_column(column)
    for number, (peer, row) in enumerate(rows.items(), 1):
        table.add_row(
            str(number),
            peer,
            row.get("answer", "waiting…"),
            row.get("price", ""),
            row.get("expected", ""),
        )
    return table


@click.command()
@click.argument("task")
@click.option("--to", "to", multiple=True, help="A pinned peer (name or DID); repeat for more.")
@click.option("--all-granted", is_flag=True, help="Every pinned peer.")
@click.option("--budget", type=click.IntRange(0, 10**12), default=100, show_default=True)
@click.option("--unit", type=click.Choice(["credits", "tokens"]), default="credits")
@click.option("--deadline", default="60s", show_default=True, help="The bidding window.")
@click.option("--pick", type=click.Choice(PICKS), default="cheapest", show_default=True)
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
    as_json: bool,
) -> None:
    """Delegate TASK to pinned peers: a call for proposals, their signed bids, an award, a
    verified result. While the node is serving, through it (no live table, no --pick ask)."""
    seconds = _seconds(deadline)
    if settings.home.running_node() is not None:
        with _owner(settings) as owner:
            peers = list(to) or ([p["did"] for p in owner.list_peers()] if all_granted else [])
            result = _done(owner.delegate(task, peers, budget, unit, seconds, pick))
        _show(result, as_json)
        return
    with _open_node(settings) as node:
        peers = list(to) or ([p.did for p in list_peers(node.vault)] if all_granted else [])
        rows: dict[str, dict[str, Any]] = {}

        def choose(proposals: list[Checked]) -> int | None:
            labels = {p.did: p.label for p in list_peers(node.vault)}
            for number, p in enumerate(proposals, 1):
                out.print(
                    f"{number}. {labels.get(p.sender, p.sender)}: {p['price']['amount']} "
                    f"{p['price']['unit']}, {p['expected_seconds']} s",
                    markup=False,
                )
            number = click.prompt("award to # (0: none)", type=int, default=1)
            return number - 1 if number > 0 else None

        with Live(_table(rows), console=out, transient=as_json) as live:

            def on_event(kind: str, data: dict[str, Any]) -> None:
                if "peer" not in data:
                    return
                row = rows.setdefault(data["peer"], {})
                if kind == "propose":
                    m = data["message"]
                    row.update(
                        answer="bid",
                        price=f"{m['price']['amount']} {m['price']['unit']}",
                        expected=f"{m['expected_seconds']} s",
                    )
                elif kind == "refuse":
                    row["answer"] = f"refused: {data['message']['reason']}"[:60]
                elif kind == "error":
                    row["answer"] = f"error: {data['error']}"[:60]
                elif kind == "accept":
                    row["answer"] = "awarded"
                live.update(_table(rows))

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
                        choose=choose if pick == "ask" else None,
                        on_event=on_event,
                    )
                )
            except OwnerError as error:
                raise click.ClickException(str(error)) from None
    _show(result, as_json)


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
