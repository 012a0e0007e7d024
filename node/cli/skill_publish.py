"""`flurry skills publish`: a signed release of a skill in the pod, announced on Nostr if asked
(node.skill_publish). Added to the `skills` group of node.cli.owner when this module loads."""

from __future__ import annotations

from pathlib import Path

import click

from node.cli.common import Settings, _owner, out
from node.cli.owner import skills

COMMANDS: tuple[click.Command, ...] = ()  # its one command joins the existing `skills` group


@skills.command("publish")
@click.argument("source", metavar="PATH")
@click.option(
    "--announce",
    is_flag=True,
    help="Also announce it on your Nostr relays (a NIP-94 event pointing at the pod).",
)
@click.pass_obj
def skills_publish(settings: Settings, source: str, announce: bool) -> None:
    """Publish the skill at PATH (its project folder or a built .whl) as a release signed by you,
    in your pod at /pod/public/skills/NAME/VERSION/, readable by anyone. A published version
    never changes: to publish changes, raise the version."""
    # Resolved here: a running server reads the path from its own working folder, not this one.
    path = Path(source).expanduser()
    with _owner(settings) as owner:
        published = owner.publish_skill(str(path.resolve()) if path.exists() else source, announce)
    state = "published" if published["written"] else "already published, unchanged:"
    out.print(f"{state} {published['name']} {published['version']}", markup=False)
    out.print(f"  manifest: {published['manifest']}  (sha256 {published['manifest_sha256']})")
    out.print(f"  wheel:    {published['wheel']}", markup=False)
    if published["announced"]:
        relays = ", ".join(published["announced"]["relays"])
        out.print(f"  announced: event {published['announced']['event_id']} on {relays}")
