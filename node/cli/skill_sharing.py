"""Skills other nodes share: `flurry skills search`, install from a peer or a release URL
(`flurry skills install peer:PEER/NAME[@VERSION]`), `update`, `approve` and the owner's
co-signature policy for strangers. The checks are node.skill_install's."""

from __future__ import annotations

import json
import sys

import click

from node.cli.common import Settings, _owner, out
from node.cli.owner import skills


def _short(did: str) -> str:
    return did if len(did) <= 24 else f"{did[:16]}…{did[-4:]}"


@skills.command("search")
@click.argument("text", default="")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: offers and refused.")
@click.pass_obj
def skills_search(settings: Settings, text: str, as_json: bool) -> None:
    """What your pinned peers publish in their pods (signed releases only)."""
    with _owner(settings) as owner:
        found = owner.search_skills(text)
    if as_json:
        out.print_json(json.dumps(found))
        return
    if not found["offers"]:
        out.print(
            "no signed releases found" + (f" matching {text!r}" if text else ""), markup=False
        )
    for o in found["offers"]:
        author = f"pinned peer {o['author_pinned']}" if o["author_pinned"] else "NOT a pinned peer"
        cosigned = ", ".join(
            _short(c) + (" (pinned)" if c in o["pinned_cosigners"] else "") for c in o["cosigners"]
        )
        out.print(
            f"{o['name']} {o['version']}  by {o['author_did']} ({author})  from {o['found_at']}",
            markup=False,
        )
        out.print(
            f"  asks for: {', '.join(o['permissions']) or 'nothing'}"
            + (f"  co-signed by: {cosigned}" if cosigned else ""),
            markup=False,
        )
    if found["refused"]:
        out.print(f"{len(found['refused'])} refused (--json says why)", markup=False)


@skills.command("update")
@click.argument("name", default="")
@click.option("--yes", is_flag=True, help="Grant the permissions an update adds, without asking.")
@click.pass_obj
def skills_update(settings: Settings, name: str, yes: bool) -> None:
    """Install newer signed releases of shared skills, from the same author only."""
    with _owner(settings) as owner:
        results = owner.update_skills(name, yes)
        asking = [r for r in results if r["status"] == "refused" and _adds_permissions(r)]
        if asking and not yes and sys.stdin.isatty():
            for r in asking:
                out.print(r["reasons"][-1], markup=False)
            if click.confirm("Grant these permissions and update?", err=True):
                again = {r["name"] for r in asking}
                results = [r for r in results if r["name"] not in again] + [
                    result for n in sorted(again) for result in owner.update_skills(n, True)
                ]
    if not results:
        out.print("no skill installed from a release", markup=False)
    for r in results:
        line = {
            "updated": f"{r['name']}: updated {r['from']} → {r['to']}",
            "up to date": f"{r['name']}: {r['from']} is the newest",
            "refused": f"{r['name']}: not updated",
        }[r["status"]]
        out.print(line, markup=False)
        for reason in r["reasons"]:
            out.print(f"  {reason}", markup=False)
        if r.get("added"):
            out.print(f"  granted what it added: {', '.join(r['added'])}", markup=False)
    if any(r["status"] == "refused" for r in results):
        raise click.ClickException("some updates were refused (reasons above)")


def _adds_permissions(result: dict) -> bool:
    return any("asks for permissions" in reason for reason in result["reasons"])


@skills.command("approve")
@click.argument("name")
@click.argument("permissions", nargs=-1)
@click.pass_obj
def skills_approve(settings: Settings, name: str, permissions: tuple[str, ...]) -> None:
    """Grant a skill the PERMISSIONS named (default: all it asks for) and enable it."""
    with _owner(settings) as owner:
        skill = owner.skill(name)
        granted = owner.approve_skill(name, list(permissions) or skill["requested"])
    out.print(f"approved {name}: {', '.join(granted['granted']) or 'no permissions'}", markup=False)


@skills.command("policy-cosign")
@click.argument("required", type=click.IntRange(0, 8))
@click.pass_obj
def skills_policy_cosign(settings: Settings, required: int) -> None:
    """How many pinned peers must co-sign a release whose author you have not pinned (0: none;
    installing a stranger's release always takes --stranger)."""
    with _owner(settings) as owner:
        owner.set_cosign_policy(required)
    out.print(
        f"a stranger's release needs {required} co-signature(s) by pinned peers", markup=False
    )


COMMANDS: tuple[click.Command, ...] = ()  # its commands join the `skills` group of node.cli.owner
