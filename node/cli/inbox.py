"""The inbox agent's commands, under `flurry inbox` (node.cli.nostr's group): what the agent
did or proposes, approving, editing or discarding its drafts, the daily digest, and the
owner's rules (node.inbox_agent, agent.inbox_policy)."""

from __future__ import annotations

import json
import re
import time

import click

from node.cli.common import Settings, _owner, out
from node.cli.nostr import _nostr_owner, nostr_owner_of
from node.owner import LocalOwner, RemoteOwner

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """ "24h", "90m", "2d", "3600" (seconds) → seconds."""
    m = _DURATION.match(text.lower())
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 24h, 90m or 2d")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def _one_line(text: str, limit: int = 100) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def print_items(items: list[dict]) -> None:
    """Each item: who, what the agent did (or proposes) and why, the summary, the draft."""
    for i in items:
        out.print(
            f"{i['id'][:8]}  {_when(i['received_at'])}  {i['channel']} from {i['sender']}  "
            f"[{i['status']}] {i['action']}",
            markup=False,
        )
        if i["subject"]:
            out.print(f"  subject: {_one_line(i['subject'])}", markup=False)
        out.print(f"  why: {'; '.join(i['why'])}", markup=False)
        if i["summary"]:
            out.print(f"  summary: {_one_line(i['summary'])}", markup=False)
        draft = i["draft"]
        if i["sent"]:
            out.print(
                f"  sent to {i['sender']} {_when(i['sent']['at'])}: {_one_line(i['sent']['text'])}",
                markup=False,
            )
        elif draft and draft.get("body"):
            out.print(f"  draft to {draft['to']}: {_one_line(draft['body'])}", markup=False)
            for e in draft.get("evidence", []):
                out.print(f"    [{e['number']}] «{_one_line(e['quote'], 90)}»", markup=False)
        elif draft and draft.get("note"):
            out.print(f"  no draft: {draft['note']}", markup=False)
        if i.get("error"):
            out.print(f"  error: {i['error']}", markup=False)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the items and messages as JSON.")
@click.pass_context
def inbox(ctx: click.Context, as_json: bool) -> None:
    """What came in, what your agent did or proposes (flurry inbox approve|discard ID), and the
    Nostr messages waiting for you: from strangers, from peers without a grant, peers' replies."""
    if ctx.invoked_subcommand:
        return
    with _owner(ctx.obj) as owner:
        assert isinstance(owner, LocalOwner | RemoteOwner)  # _owner makes one of the two
        items = owner.inbox_items()
        messages = nostr_owner_of(owner).inbox()
    # A Nostr message the agent has an item for is shown once, as the item.
    handled = {i["thread"]["message_id"] for i in items if i["channel"] == "nostr"}
    messages = [m for m in messages if m["message_id"] not in handled]
    if as_json:
        click.echo(json.dumps({"items": items, "nostr": messages}))
        return
    if not items and not messages:
        out.print("the inbox is empty")
    print_items(items)
    if messages:
        out.print("Nostr messages waiting:")
    for m in messages:
        sender = m["peer_did"] or m["npub"]
        out.print(
            f"{m['message_id'][:12]}  {_when(m['sent_at'])}  from {sender}  ({m['why']})",
            markup=False,
        )
        out.print(f"  {m['text']}", markup=False)


@inbox.command("remove")
@click.argument("message_id")
@click.pass_obj
def inbox_remove(settings: Settings, message_id: str) -> None:
    """Delete a message from the inbox (by the id `flurry inbox` shows, or its full id)."""
    with _nostr_owner(settings) as owner:
        matches = [
            m
            for m in owner.inbox()
            if m["message_id"].startswith(message_id) or m["id"] == message_id
        ]
        if len(matches) != 1:
            raise click.ClickException(
                f"{'no' if not matches else 'more than one'} message {message_id!r} in the inbox"
            )
        owner.remove_from_inbox(matches[0]["message_id"])
    out.print(f"removed {matches[0]['message_id']}")


@inbox.command("show")
@click.argument("item_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def inbox_show(settings: Settings, item_id: str, as_json: bool) -> None:
    """One item in full: the message, what the agent did and why, its draft and evidence."""
    with _owner(settings) as owner:
        item = owner.inbox_item(item_id)
    if as_json:
        click.echo(json.dumps(item))
        return
    print_items([item])
    out.print("", markup=False)
    out.print(item["text"], markup=False)


@inbox.command("approve")
@click.argument("item_id")
@click.option("--edit", is_flag=True, help="Edit the draft in $EDITOR before it is sent.")
@click.option("--body", help="Send this text instead of the draft.")
@click.pass_obj
def inbox_approve(settings: Settings, item_id: str, edit: bool, body: str | None) -> None:
    """Send a draft to the message's sender (and only there), labelled as written by your agent."""
    with _owner(settings) as owner:
        if edit and body is None:
            item = owner.inbox_item(item_id)
            edited = click.edit((item["draft"] or {}).get("body", "") or "")
            if edited is None:
                raise click.ClickException("the editor was closed without saving: nothing sent")
            body = edited
        item = owner.approve_draft(item_id, body)
    out.print(
        f"sent {item['id'][:8]} to {item['sender']} ({item['channel']}): {item['sent']['message_id']}",
        markup=False,
    )


@inbox.command("discard")
@click.argument("item_id")
@click.pass_obj
def inbox_discard(settings: Settings, item_id: str) -> None:
    """Drop an item's draft: nothing is sent."""
    with _owner(settings) as owner:
        item = owner.discard_draft(item_id)
    out.print(f"discarded {item['id'][:8]}", markup=False)


@inbox.command("digest")
@click.option("--since", default="24h", show_default=True, help="How far back: 24h, 90m, 2d.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def inbox_digest(settings: Settings, since: str, as_json: bool) -> None:
    """What came in, what the agent did with it, and the drafts waiting for you."""
    seconds = parse_duration(since)
    with _owner(settings) as owner:
        digest = owner.inbox_digest(seconds)
    if as_json:
        click.echo(json.dumps(digest))
        return
    actions = ", ".join(f"{k} {v}" for k, v in sorted(digest["by_action"].items())) or "nothing"
    out.print(f"since {_when(digest['since'])}: {digest['received']} received ({actions})")
    out.print(f"{len(digest['waiting'])} drafts waiting for you", markup=False)
    for w in digest["waiting"]:
        out.print(f"  {w['id'][:8]}  {_one_line(w['line'])}", markup=False)


@inbox.group("rules", invoke_without_command=True)
@click.pass_context
def inbox_rules(ctx: click.Context) -> None:
    """Your policy: what the agent does with messages, per sender, peer DID, domain or label."""
    if ctx.invoked_subcommand:
        return
    ctx.invoke(inbox_rules_list)


@inbox_rules.command("list")
@click.pass_obj
def inbox_rules_list(settings: Settings) -> None:
    with _owner(settings) as owner:
        rules = owner.inbox_rules()
    if not rules:
        out.print("no rules: every message gets a draft for you to approve")
    for r in rules:
        extra = f"  tags {','.join(r['tags'])}" if r["tags"] else ""
        if r["action"] == "auto-reply":
            extra += f"  at most {r['per_day']} a day"
        out.print(f"{r['id']}  {r['match']} {r['value']} → {r['action']}{extra}", markup=False)


@inbox_rules.command("add")
@click.option("--sender", help="A mail address, a Nostr key (npub or hex) or a DID.")
@click.option("--did", help="A peer's DID (only when its signature proved it).")
@click.option("--domain", help="A mail domain (subdomains too).")
@click.option("--label", help="A label: mail, nostr, a2a, peer, stranger, authenticated.")
@click.option(
    "--action",
    type=click.Choice(["auto-reply", "draft", "summarise", "ignore"]),
    required=True,
)
@click.option("--tag", "tags", multiple=True, help="A vault tag replies may draw on (repeat).")
@click.option("--per-day", default=3, show_default=True, help="Auto-replies per sender per day.")
@click.pass_obj
def inbox_rules_add(
    settings: Settings,
    sender: str | None,
    did: str | None,
    domain: str | None,
    label: str | None,
    action: str,
    tags: tuple[str, ...],
    per_day: int,
) -> None:
    """Add a rule (sealed in the vault). The most specific rule applies: DID, sender, domain, label."""
    given = {
        k: v
        for k, v in {"did": did, "sender": sender, "domain": domain, "label": label}.items()
        if v
    }
    if len(given) != 1:
        raise click.UsageError("name exactly one of --sender, --did, --domain, --label")
    [(match, value)] = given.items()
    with _owner(settings) as owner:
        rule = owner.add_inbox_rule(
            {
                "match": match,
                "value": value,
                "action": action,
                "tags": list(tags),
                "per_day": per_day,
            }
        )
    out.print(
        f"added {rule['id']}: {rule['match']} {rule['value']} → {rule['action']}", markup=False
    )


@inbox_rules.command("remove")
@click.argument("rule_id")
@click.pass_obj
def inbox_rules_remove(settings: Settings, rule_id: str) -> None:
    with _owner(settings) as owner:
        if not owner.remove_inbox_rule(rule_id):
            raise click.ClickException(f"no rule {rule_id}")
    out.print(f"removed {rule_id}", markup=False)


COMMANDS = (inbox,)
