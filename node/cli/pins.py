"""`flurry skills review`: the tools of a skill that changed since the owner approved it
(skills.tool_pins), shown old against new, and accepted one by one or all at once."""

from __future__ import annotations

import click

from node.cli.common import Settings, _owner, out


def show_review(skill: dict) -> None:
    """Each tool of ``skill`` (an owner's skill JSON) waiting for review, with its difference."""
    name = skill["name"]
    for change in skill.get("review", []):
        tool = change["name"]
        if change["change"] == "refused":
            out.print(f"  tool {tool} is disabled and cannot be accepted:", markup=False)
        else:
            what = (
                "is new" if change["change"] == "new" else f"changed ({', '.join(change['parts'])})"
            )
            out.print(
                f"  tool {tool} {what} since you approved {name}; disabled until you review it: "
                f"flurry skills review {name} --accept {tool}",
                markup=False,
            )
        for line in change["diff"]:
            out.print(f"    {line}", markup=False)


def arguments(schema: object) -> str:
    """A tool's input schema in a line: each argument, its type, and whether it is required."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return "none"
    listed = schema.get("required")
    required: list = listed if isinstance(listed, list) else []
    found = [
        f"{name} ({prop.get('type', 'any') if isinstance(prop, dict) else 'any'}"
        + (", required)" if name in required else ")")
        for name, prop in schema["properties"].items()
    ]
    return ", ".join(found) or "none"


def show_pinned(skill: dict) -> None:
    """What approving pins: each tool's arguments (its description is shown above)."""
    for tool in skill["tools"]:
        out.print(
            f"  tool {tool['name']} takes: {arguments(tool.get('input_schema'))}", markup=False
        )
    out.print(
        "  approving pins these tools as listed: if one changes later it is disabled until you "
        "review it (flurry skills review)",
        markup=False,
    )


@click.command("review")
@click.argument("name")
@click.option(
    "--accept",
    "accept",
    multiple=True,
    metavar="TOOL",
    help="Pin this tool's new version and let it run again (repeatable).",
)
@click.option("--accept-all", is_flag=True, help="Pin every changed or new tool's version.")
@click.pass_obj
def review(settings: Settings, name: str, accept: tuple[str, ...], accept_all: bool) -> None:
    """Review the tools of skill NAME that changed or appeared since you approved it: each is
    shown against the version you approved, and stays disabled until you accept it. Without
    --accept the skill is started once to list its tools now."""
    with _owner(settings) as owner:
        skill = owner.review_skill(name, list(accept), accept_all)
    if accept or accept_all:
        out.print(
            f"accepted {', '.join(accept) or 'every waiting tool'} of {name}: pinned as now listed",
            markup=False,
        )
    if skill.get("review"):
        show_review(skill)
    elif not (accept or accept_all):
        out.print(f"{name}: every tool is as you approved it", markup=False)


COMMANDS = ()  # `review` joins the `skills` group (node.cli.owner) in node.cli
