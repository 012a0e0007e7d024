"""The owner's management commands: grants, tokens, audit, peers, send, pod, skills, approvals."""

from __future__ import annotations

import json
import sys
import time

import click

from node.cli.common import (
    Settings,
    _done,
    _owner,
    err,
    out,
)
from node.cli.pins import show_pinned, show_review
from node.skill_install import is_release_source


@click.group()
def grants() -> None:
    """What other agents (by DID) may ask of this node."""


@grants.command("add")
@click.argument("did")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    required=True,
    help="An operation: ask, chat, send, infer, tool:NAME (repeatable).",
)
@click.option(
    "--tags",
    "tags",
    default=None,
    help="Comma-separated vault tags the DID's questions may draw on (default: none).",
)
@click.option("--quota", default=None, help="Requests allowed per window, e.g. 20/day or 5/hour.")
@click.option(
    "--tokens",
    "token_quotas",
    multiple=True,
    help="For infer: model tokens (prompt + generated) per window, e.g. 20000/day (repeatable).",
)
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    help="For infer: the most tokens one request may generate.",
)
@click.option("--note", default="", help="A note to yourself: who this is.")
@click.pass_obj
def grants_add(
    settings: Settings,
    did: str,
    allow: tuple[str, ...],
    tags: str | None,
    quota: str | None,
    token_quotas: tuple[str, ...],
    max_tokens: int | None,
    note: str,
) -> None:
    allowed = sorted({a for part in allow for a in part.split(",") if a})
    tag_list = sorted({t.strip() for t in tags.split(",") if t.strip()}) if tags is not None else []
    grant = {
        "did": did,
        "allow": allowed,
        "tags": tag_list,
        "quota": quota,
        "tokens": list(token_quotas),
        "max_tokens": max_tokens,
        "note": note,
        "created_at": time.time(),
    }
    with _owner(settings) as owner:
        owner.add_grant(grant)
    out.print(
        f"granted {did}: {', '.join(allowed)}; tags {', '.join(tag_list) or '(none)'}; quota {quota or 'none'}"
        + (f"; tokens {', '.join(token_quotas)}" if token_quotas else "")
        + (f"; max_tokens {max_tokens}" if max_tokens else "")
    )


@grants.command("list")
@click.pass_obj
def grants_list(settings: Settings) -> None:
    with _owner(settings) as owner:
        found = owner.list_grants()
    if not found:
        out.print("no grants yet; only you can use this node")
    for grant in found:
        tags = "all" if grant["tags"] is None else ", ".join(grant["tags"]) or "(none)"
        out.print(
            f"{grant['did']}  allow {', '.join(grant['allow'])}  tags {tags}  quota {grant['quota'] or 'none'}  {grant['note']}"
        )


@grants.command("remove")
@click.argument("did")
@click.pass_obj
def grants_remove(settings: Settings, did: str) -> None:
    with _owner(settings) as owner:
        if not owner.remove_grant(did):
            raise click.ClickException(f"no grant for {did}")
    out.print(f"removed the grant of {did}")


@click.group()
def tokens() -> None:
    """Bearer tokens for your own local apps (the OpenAI-compatible /v1 API)."""


@tokens.command("create")
@click.argument("name")
@click.option("--allow", "allow", multiple=True, default=("chat",), show_default=True)
@click.option(
    "--peer", default=None, help="A peer's DID the token acts as: it may only infer, metered."
)
@click.pass_obj
def tokens_create(settings: Settings, name: str, allow: tuple[str, ...], peer: str | None) -> None:
    with _owner(settings) as owner:
        token = (
            owner.create_token(name, sorted(set(allow)))
            if peer is None
            else owner.create_peer_token(name, peer)
        )
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


@click.group()
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
        raise click.ClickException(
            f"the audit log does NOT verify ({len(report['problems'])} problems in {report['count']} entries)"
        )
    out.print(
        f"the audit log verifies: {report['count']} entries, every hash and signature checked"
    )


@click.group()
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
    out.print(
        f"pinned {peer['did']} for {peer['url']}" + (f" as {name}" if name else ""), markup=False
    )
    out.print(f"  {peer['card_name']}: {peer['card_description']}", style="dim", markup=False)
    if peer.get("nostr"):
        out.print(
            f"  Nostr key {peer['nostr']} (proven by the card): flurry nostr send works too",
            style="dim",
            markup=False,
        )


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


@click.command()
@click.argument("peer")
@click.argument("text")
@click.pass_obj
def send(settings: Settings, peer: str, text: str) -> None:
    """Ask a pinned peer (by name, DID or URL); signed by this node, recorded in the audit log."""
    with _owner(settings) as owner:
        reply = _done(owner.send(peer, text))
    click.echo(reply["text"])


@click.group()
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
        out.print(
            f"{entry['path']}  {entry['type'] or 'container'}  {entry['size']} bytes"
            if entry["type"]
            else entry["path"],
            markup=False,
        )


@pod.command("grant")
@click.argument("who")
@click.argument("container")
@click.argument("modes", nargs=-1, required=True)
@click.pass_obj
def pod_grant(settings: Settings, who: str, container: str, modes: tuple[str, ...]) -> None:
    """WHO (a DID, or 'public') may use MODES (read, append, write, control; or none) on
    CONTAINER and below, until a rule further down says otherwise."""
    chosen = (
        [] if modes == ("none",) else sorted({m for part in modes for m in part.split(",") if m})
    )
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


@click.group()
def skills() -> None:
    """Skills: install them like apps, see what they ask for, grant it, use them from ask."""


@skills.command("install")
@click.argument("source")
@click.option(
    "--yes", is_flag=True, help="Approve every permission the skill asks for, without asking."
)
@click.option(
    "--stranger", is_flag=True, help="Accept a release whose author is not the pinned peer."
)
@click.pass_obj
def skills_install(settings: Settings, source: str, yes: bool, stranger: bool) -> None:
    """Install a skill from a wheel, a project folder, a pip requirement, a pinned peer
    (peer:PEER/NAME[@VERSION]) or a signed release's URL; review what it asks for, then approve."""
    with _owner(settings) as owner:
        if is_release_source(source):  # every check of node.skill_install, then the same review
            skill = owner.install_release(source, stranger)
            _show_skill(skill)
            out.print(f"  release signed by {skill['origin']['author_did']}", markup=False)
        else:
            skill = owner.install_skill(source)
            _show_skill(skill)
        if not (
            yes
            or (
                sys.stdin.isatty()
                and click.confirm("Approve these permissions and enable it?", err=True)
            )
        ):
            owner.remove_skill(skill["name"])
            raise click.ClickException(f"not approved; {skill['name']} was removed again")
        owner.approve_skill(skill["name"], skill["requested"])
    out.print(
        f"installed {skill['name']}; its tools default to `ask` (flurry skills policy TOOL allow|ask|deny)"
    )


def _show_skill(skill: dict) -> None:
    if skill["managed"]:
        out.print(f"{skill['name']} {skill['version']} — {skill['description']}", markup=False)
        out.print(
            f"  author: {skill['author'] or '(not given)'}"
            + ("  (signed)" if skill["signed"] else ""),
            markup=False,
        )
    else:
        out.print(
            f"{skill['name']}: {skill['description']} (not sandboxed, nothing brokered)",
            markup=False,
        )
    for tool in skill["tools"]:
        disabled = " (disabled: changed since approval)" if tool.get("disabled") else ""
        out.print(
            f"  tool {tool['name']} [{tool['policy']}]: {tool['description']}{disabled}",
            markup=False,
        )
    show_review(skill)
    if "sandbox" in skill:
        out.print(f"  sandbox: {skill['sandbox']}", markup=False)
    for permission in skill["requested"]:
        state = (
            "granted"
            if permission in skill["granted"]
            else "asks for"
            if not skill["approved"]
            else "asked, not granted"
        )
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
        show_pinned(skill)
        out.print("  it runs with your permissions: nothing is brokered or sandboxed", markup=False)
        if not (
            yes
            or (
                sys.stdin.isatty()
                and click.confirm("Register this server and enable its tools?", err=True)
            )
        ):
            owner.remove_skill(name)
            raise click.ClickException(f"not approved; {name} was removed again")
        owner.approve_skill(name, [])
    out.print(
        f"registered {name}; its tools default to `ask` (flurry skills policy TOOL allow|ask|deny)"
    )


@skills.command("list")
@click.pass_obj
def skills_list(settings: Settings) -> None:
    with _owner(settings) as owner:
        found = owner.list_skills()
    if not found:
        out.print("no skills installed; flurry skills install PATH")
    for skill in found:
        state = (
            "enabled"
            if skill["enabled"] and skill["approved"]
            else "disabled"
            if skill["approved"]
            else "not approved"
        )
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


@click.command()
@click.option("--approve", "approve_id", metavar="ID", help="Let the waiting tool call ID run.")
@click.option("--deny", "deny_id", metavar="ID", help="Refuse the waiting tool call ID.")
@click.pass_obj
def approvals(settings: Settings, approve_id: str | None, deny_id: str | None) -> None:
    """Tool calls waiting for your yes or no (asked for over the API, by the TUI or a script)."""
    with _owner(settings) as owner:
        decided = approve_id or deny_id
        if decided:
            owner.decide_approval(decided, "approve" if approve_id else "deny")
            out.print(f"{'approved' if approve_id else 'denied'} {decided}")
            return
        waiting = owner.list_approvals()
    if not waiting:
        out.print("nothing is waiting for you")
    for pending in waiting:
        out.print(
            f"{pending['id']}  {pending['skill']}.{pending['tool']}  from {pending['requester']}",
            markup=False,
        )
        out.print("  " + json.dumps(pending["arguments"], ensure_ascii=False), markup=False)


COMMANDS = (grants, tokens, audit, peers, send, pod, skills, approvals)
