"""Contracts between agents (issue 18): `flurry contracts verify FILE [--json]`.

`verify` re-checks an exported Contract Net conversation offline (agent.contract_net): every
message's shape and signature, every hash link, the protocol's order, the times along the
chain, and the receipt a result carries. It needs no home and no passphrase: a third party
with the file alone gets the same verdict.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from agent.contract_net import (
    MAX_EXPORT_BYTES,
    ContractRefused,
    message_id,
    verify_export,
)
from node.cli.common import Settings, _owner, out
from node.contracts_seller import DEFAULT_POLICY


@click.group()
def contracts() -> None:
    """Contracts with other agents: calls for proposals, bids, awards, results."""


def _rows(raw: bytes, refused: ContractRefused | None) -> list[dict[str, Any]]:
    """What each message says about itself, for display only: its status comes from
    verify_export (checked up to the refused one, which is marked, and none after it)."""
    try:
        messages = json.loads(raw)["messages"]
        assert isinstance(messages, list)
    except (ValueError, KeyError, TypeError, AssertionError, RecursionError):
        return []
    rows, seen = [], set()
    for index, message in enumerate(messages):
        message = message if isinstance(message, dict) else {}
        try:
            mid: str | None = message_id(message)
        except (ValueError, TypeError, RecursionError):
            mid = None
        link = message.get("in_reply_to")
        if refused is None or refused.index is None or index < refused.index:
            status = "ok"
        elif index == refused.index:
            status = f"refused: {refused.code}"
        else:
            status = "not checked"
        rows.append(
            {
                "index": index,
                "performative": str(message.get("performative"))[:16],
                "sender": str(message.get("sender"))[:80],
                "issued_at": message.get("issued_at"),
                "id": mid,
                "link_ok": link is None or link in seen,
                "status": status,
            }
        )
        if mid is not None:
            seen.add(mid)
    return rows


def _when(seconds: object) -> str:
    if type(seconds) is not int or not 0 <= seconds < 1 << 40:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


@contracts.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object: the messages and the verdict."
)
@click.pass_context
def verify(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Check an exported conversation offline: signatures, hash links, order, times, receipts.

    Exit status 0 if valid, 1 if refused (the reason and the message's index are printed)."""
    with file.open("rb") as handle:
        raw = handle.read(MAX_EXPORT_BYTES + 1)  # verify_export refuses anything longer
    refused: ContractRefused | None = None
    conversation = None
    try:
        conversation = verify_export(raw, now=time.time())
    except ContractRefused as error:
        refused = error
    rows = _rows(raw, refused)
    verdict: dict[str, Any] = {"valid": refused is None}
    if refused is not None:
        verdict["refused"] = {"code": refused.code, "reason": str(refused), "index": refused.index}
    elif conversation is not None:
        award, outcome = conversation.award, conversation.outcome
        verdict.update(
            conversation=conversation.id,
            buyer=conversation.buyer,
            seller=None if award is None else award.receiver,
            price=None if award is None else award["price"],
            outcome=None if outcome is None else outcome.performative,
            late=conversation.late,
            receipt=conversation.receipt_id(),
        )
    if as_json:
        out.print(json.dumps({"messages": rows, **verdict}), markup=False)
    else:
        for row in rows:
            out.print(
                f"{row['index']:>3}  {row['performative']:<8}  {_when(row['issued_at'])}  "
                f"{row['sender']}  link {'ok' if row['link_ok'] else 'BROKEN'}  {row['status']}",
                markup=False,
            )
        if refused is None:
            late = "  (the result came late)" if verdict["late"] else ""
            receipt = f"  receipt {verdict['receipt']} checked" if verdict["receipt"] else ""
            out.print(
                f"valid: {len(rows)} messages, outcome {verdict['outcome'] or 'open'}{late}{receipt}",
                markup=False,
            )
        else:
            where = " (the document itself)" if refused.index is None else ""
            out.print(f"refused: {refused.code}: {refused}{where}", markup=False)
    if refused is not None:
        ctx.exit(1)


@contracts.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_(settings: Settings, as_json: bool) -> None:
    """Open and past contracts, bought and sold (each re-verified as it is read)."""
    with _owner(settings) as owner:
        rows = owner.list_contracts()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print("no contracts yet")
    for row in rows:
        price = row["price"]
        cost = "" if price is None else f"{price['amount']} {price['unit']}"
        out.print(
            f"{row['conversation']}  {row['side']:<6}  {row['state']:<8}  {cost:<12}  "
            f"{row['task'][:60]}",
            markup=False,
        )


@contracts.command()
@click.argument("peer_did")
@click.option("--fixed", type=click.IntRange(0, 10**9), default=DEFAULT_POLICY["fixed"])
@click.option("--per-1k", type=click.IntRange(0, 10**9), default=DEFAULT_POLICY["per_1k_tokens"])
@click.option("--unit", type=click.Choice(["credits", "tokens"]), default="credits")
@click.option("--max-open", type=click.IntRange(1, 10**9), default=DEFAULT_POLICY["max_open"])
@click.option(
    "--expected", type=click.IntRange(1, 10**9), default=DEFAULT_POLICY["expected_seconds"]
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="Work offered: answer (the default), infer, tool:NAME; repeat for more. The grant "
    "must allow the same (ask, infer, tool:NAME).",
)
@click.pass_obj
def policy(
    settings: Settings,
    peer_did: str,
    fixed: int,
    per_1k: int,
    unit: str,
    max_open: int,
    expected: int,
    kinds: tuple[str, ...],
) -> None:
    """How this node bids on PEER_DID's calls (its grant must allow contract, and what each
    kind of work needs)."""
    with _owner(settings) as owner:
        owner.set_contract_policy(
            peer_did,
            {
                "kinds": list(kinds) or ["answer"],
                "unit": unit,
                "fixed": fixed,
                "per_1k_tokens": per_1k,
                "max_open": max_open,
                "expected_seconds": expected,
            },
        )
    out.print(
        f"{peer_did}: {', '.join(kinds or ['answer'])} for {fixed} + {per_1k} per 1k tokens, "
        f"in {unit}",
        markup=False,
    )


COMMANDS = [contracts]
