"""Receipts from peers: `flurry receipts list | show ID | verify RECEIPT [--prompt FILE]`.

A receipt comes with every answer a peer's node gives this one (agent.receipts); `flurry send`
keeps it, sealed in the vault. `verify` checks the signature, then re-executes the prompt on
this node's own model with the receipt's settings and compares the output tokens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from agent.models import resolve_model
from agent.receipts import (
    MAX_REPLAY,
    RECEIPT_KIND,
    ReceiptRejected,
    Verdict,
    check_signature,
    find_receipt,
    from_carrier,
    is_data_answer,
    parse,
    private_prompt_verdict,
    read_prompt,
    receipt_id,
    verify,
)
from agent.runtime import ChatModel
from node.cli.common import Settings, _keys, out
from node.errors import OwnerError
from store.sealing import Sealer
from store.vault import Vault


@click.group()
def receipts() -> None:
    """Receipts that came with peers' answers: list, show, verify by re-execution."""


def _vault(settings: Settings) -> Vault:
    settings.home.require()
    return Vault(settings.home.vault, Sealer(_keys(settings).data_key))


@receipts.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per receipt, one a line.")
@click.pass_obj
def list_receipts(settings: Settings, as_json: bool) -> None:
    """The receipts this node holds, oldest first."""
    vault = _vault(settings)
    try:
        for rid, kept in vault.records(RECEIPT_KIND):
            receipt = kept["receipt"]
            row = {
                "id": rid,
                # "issued": this node's, for a peer's question answered from its data (kept
                # with the salt and tokens to re-execute it); "received": a peer's, for us.
                "direction": "issued" if kept.get("issued") else "received",
                "kind": "data answer" if is_data_answer(receipt) else "infer",
                "peer": kept.get("peer"),
                "issuer": receipt["issuer"],
                "issued_at": receipt["issued_at"],
                "output_tokens": receipt["output"]["tokens"],
                "verdict": kept.get("verdict"),
            }
            if as_json:
                out.print(json.dumps(row), markup=False)
            else:
                when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(receipt["issued_at"]))
                out.print(
                    f"{rid[:16]}  {when}  {row['direction']:<8}  {row['kind']:<11}  "
                    f"{row['output_tokens']:>5} tokens  "
                    f"{row['verdict'] or 'unverified':<12}  {kept.get('peer') or receipt['issuer']}",
                    markup=False,
                )
    finally:
        vault.close()


@receipts.command()
@click.argument("ref")
@click.pass_obj
def show(settings: Settings, ref: str) -> None:
    """The receipt REF (its id, or its first 8+ characters) as JSON, with the answer it came with."""
    vault = _vault(settings)
    try:
        found = find_receipt(vault, ref)
    finally:
        vault.close()
    if found is None:
        raise OwnerError(f"no receipt {ref!r} here (or several start so): see flurry receipts list")
    rid, kept = found
    out.print(json.dumps({"id": rid, **kept}, indent=2), markup=False)


@receipts.command(name="verify")
@click.argument("ref")
@click.option(
    "--prompt",
    "prompt_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The prompt: a JSON list of token ids or chat messages, or plain text (one user "
    "message). By default, the messages this node sent with the request.",
)
@click.option("--fast", is_flag=True, help="One prefill instead of re-execution (greedy only).")
@click.option("--json", "as_json", is_flag=True, help="The verdict as one JSON object.")
@click.pass_obj
def verify_command(
    settings: Settings, ref: str, prompt_file: Path | None, fast: bool, as_json: bool
) -> None:
    """Check the receipt REF (a stored receipt's id, or a receipt file), then re-execute it on
    this node's model. Exit status 0 when verified, 2 on a mismatch, 3 when inconclusive."""
    kept: dict[str, Any] = {}
    stored_id: str | None = None
    path = Path(ref)
    vault = _vault(settings)
    try:
        if path.is_file():
            receipt, output_tokens = from_carrier(parse(path.read_bytes()))
        else:
            found = find_receipt(vault, ref)
            if found is None:
                raise OwnerError(f"no receipt file or stored receipt {ref!r}")
            stored_id, kept = found
            receipt, output_tokens = kept["receipt"], kept.get("output_tokens")
        try:
            check_signature(receipt)
        except ReceiptRejected as rejected:
            raise OwnerError(f"refused ({rejected.reason}): {rejected}") from None
        salt = bytes.fromhex(kept["salt"]) if kept.get("salt") else b""
        if kept.get("issued"):  # this node's own data answer: its exact tokens are kept
            prompt: list[int] | list[dict] | None = kept["prompt_tokens"]
        else:
            prompt = read_prompt(prompt_file) if prompt_file else kept.get("messages")
        if is_data_answer(receipt) and not salt:
            # A peer's answer from its data: signed (checked above), the answer kept is the
            # one it signs (checked when it was kept); the prompt is the peer's to keep.
            _say(private_prompt_verdict(), receipt, as_json)
        if not prompt:
            raise OwnerError("this receipt's prompt is not known here: pass --prompt FILE")
        config = settings.home.load_config()
        wanted = receipt["settings"]  # opened as the receipt ran, within what we replay
        model = ChatModel(
            resolve_model(config.chat_model, settings.home.models, lambda _: None),
            **{n: min(wanted[n], MAX_REPLAY[n]) for n in MAX_REPLAY},
            n_gpu_layers=0 if wanted["backend"] == "cpu" else config.n_gpu_layers,
        )
        try:
            verdict = verify(receipt, model, prompt, output_tokens, fast=fast, salt=salt)
        except ReceiptRejected as rejected:
            raise OwnerError(f"refused ({rejected.reason}): {rejected}") from None
        if stored_id is not None:
            vault.put_record(RECEIPT_KIND, stored_id, {**kept, "verdict": verdict.verdict})
    finally:
        vault.close()
    _say(verdict, receipt, as_json)


def _say(verdict: Verdict, receipt: dict[str, Any], as_json: bool) -> NoReturn:
    if as_json:
        out.print(json.dumps({"id": receipt_id(receipt), **verdict.as_dict()}), markup=False)
    else:
        out.print(f"{verdict.verdict}: {verdict.reason}", markup=False)
        if verdict.first_difference:
            d = verdict.first_difference
            out.print(
                f"  first difference at output token {d['index']}: the receipt has "
                f"{d['receipt_token']}, this node {d['replay_token']}",
                markup=False,
            )
        if verdict.differences:
            out.print(f"  differs from this node: {', '.join(verdict.differences)}", markup=False)
    raise SystemExit({"verified": 0, "mismatch": 2, "inconclusive": 3}[verdict.verdict])


COMMANDS = [receipts]
