"""Metered inference from the command line: `flurry infer` runs a prompt on a peer's model,
`flurry usage` shows the ledger (node.ledger) per peer and per day, both ways."""

from __future__ import annotations

import json

import click

from node.cli.common import Settings, _done, _owner, out


@click.command()
@click.argument("peer")
@click.argument("prompt")
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=256, show_default=True)
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The answer, its usage and receipt as JSON.")
@click.pass_obj
def infer(
    settings: Settings, peer: str, prompt: str, max_tokens: int, temperature: float, as_json: bool
) -> None:
    """Run PROMPT on a pinned peer's model (its grant to this node must allow infer): the model
    alone, no data, no tools. What it reports using goes into this node's ledger."""
    with _owner(settings) as owner:
        reply = _done(owner.infer(peer, prompt, max_tokens, temperature))
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    click.echo(reply["text"])
    usage = reply["usage"]
    out.print(
        f"[dim]{usage['prompt_tokens']} prompt + {usage['completion_tokens']} generated tokens "
        f"on {usage['model']}[/dim]"
    )


@click.command()
@click.option("--peer", default=None, help="Only this peer's DID.")
@click.option("--days", type=click.IntRange(1, 3660), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def usage(settings: Settings, peer: str | None, days: int, as_json: bool) -> None:
    """Tokens served for peers on this node's model, and used at peers' models, per day."""
    with _owner(settings) as owner:
        found = owner.usage(peer, days)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for peer_did, units in sorted(found.get("balances", {}).items()):  # node.contracts_wire
        for unit, b in sorted(units.items()):
            out.print(
                f"contracts with {peer_did}: earned {b['earned']} {unit}, spent {b['spent']} "
                f"{unit}, balance {b['balance']:+d} {unit}",
                markup=False,
            )
    if not found["rows"]:
        out.print(f"no metered jobs in the last {days} days")
        return
    for row in found["rows"]:
        way = "served for" if row["direction"] == "served" else "used at"
        out.print(
            f"{row['day']}  {way:<10} {row['peer']}  {row['jobs']} jobs  "
            f"{row['prompt_tokens']} prompt + {row['completion_tokens']} generated tokens",
            markup=False,
        )
    for direction, way in (("served", "served for peers"), ("used", "used at peers")):
        t = found["totals"][direction]
        out.print(
            f"total {way}: {t['jobs']} jobs, {t['prompt_tokens'] + t['completion_tokens']} tokens",
            markup=False,
        )


COMMANDS = (infer, usage)
