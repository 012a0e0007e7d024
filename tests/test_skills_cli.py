"""A skill used like an app, through the real command line and the real model (temperature 0):
install a wheel built here, review and approve, the owner's policy, a tool call, removal."""

from __future__ import annotations

import json
import sys

from test_skills import LANDLOCK_ABI, MCP_SERVER, make_wheel

NOTES_SKILL = """
from skills.sdk import Skill

def add_note(text):
    return "noted: " + text

def skill():
    return Skill(
        manifest={
            "name": "notes", "version": "0.1.0", "description": "Keeps short notes for the owner.",
            "permissions": ["notes.write"],
            "tools": [{"name": "add_note", "description": "Add a note to the owner's notes.",
                       "parameters": {"type": "object", "required": ["text"],
                                      "properties": {"text": {"type": "string", "description": "The note"}}}}],
        },
        tools={"add_note": add_note},
    )
"""

PLUMBER = "add a note: call the plumber on Monday"


def test_install_ask_policy_and_remove(cli, corpus, tmp_path):
    # In process (CliRunner), with the real model, the real skill process and its sandbox: the
    # model's choice and the policy are what is tested, not the `flurry` process around them
    # (test_skills_and_tool_calls_through_the_running_node runs the skills commands as processes).
    cli("init")
    cli("add", str(corpus))
    wheel = make_wheel(tmp_path, "notes-skill", "notes_skill", NOTES_SKILL)

    installed = cli("skills", "install", str(wheel), "--yes")
    assert "notes 0.1.0" in installed.stdout and "asks for: notes.write" in installed.stdout
    assert "tool add_note" in installed.stdout
    assert "enabled" in cli("skills", "list").stdout
    info = cli("skills", "info", "notes").stdout
    assert "granted: notes.write" in info
    # What confines it, on this machine: the owner reads it before letting it run.
    assert (
        f"sandbox: filesystem (landlock ABI {LANDLOCK_ABI})" in info
        if LANDLOCK_ABI
        else "no filesystem sandbox" in info
    )

    # The default policy is "ask"; with nobody at a terminal the call is shown and not run.
    asked = json.loads(cli("ask", PLUMBER, "--json", input="").stdout)
    # The real model's choice, asserted because it is far from a tie: add_note is the only tool
    # offered and leads "none" by 3.7 logits on this request (measured, issue 20), where the CPU
    # kernels' differences move a logit by hundredths. Ties are scored in bench/bench_tool_choice.py.
    assert asked["tool"]["tool"] == "add_note" and asked["tool"]["ran"] is False
    # The grammar guarantees a well-formed call; the 135M default does not reliably copy the
    # owner's words into it ("The note will be delivered on Monday at 10am"), so only the shape
    # of the arguments is asserted.
    assert (
        isinstance(asked["tool"]["arguments"]["text"], str)
        and asked["tool"]["arguments"]["text"].strip()
    )

    cli("skills", "policy", "add_note", "allow")
    ran = json.loads(cli("ask", PLUMBER, "--json").stdout)
    assert ran["tool"]["ran"] is True
    assert (
        ran["answer"] == "noted: " + ran["tool"]["arguments"]["text"]
    )  # what the skill's process returned

    # A question about the notes is still answered from the notes, not sent to a tool.
    plain = json.loads(cli("ask", "When is the dentist appointment?", "--json").stdout)
    assert "tool" not in plain and plain["sources"][0]["path"].endswith("health/dentist.md")

    # The call that ran is in the audit log, which verifies.
    assert "1 entries" in cli("audit", "verify").stdout

    cli("skills", "policy", "add_note", "deny")
    denied = json.loads(cli("ask", PLUMBER, "--json").stdout)
    assert denied["tool"]["ran"] is False and "denied" in denied["tool"]["reason"]

    cli("skills", "remove", "notes")
    assert "no skills installed" in cli("skills", "list").stdout
    assert not (cli.home / "skills" / "notes").exists()


def test_a_broken_wheel_is_a_clear_error(cli, tmp_path):
    # In process (CliRunner): an error path of the command line.
    cli("init")
    bad = tmp_path / "broken-0.1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    result = cli("skills", "install", str(bad), "--yes", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_skills_and_tool_calls_through_the_running_node(flurry, tmp_path):
    """While `flurry serve` holds the home, the skills commands and ask go through its owner API."""
    flurry("init")
    wheel = make_wheel(tmp_path, "notes-skill", "notes_skill", NOTES_SKILL)
    with flurry.serving():
        installed = flurry("skills", "install", str(wheel), "--yes")
        assert "notes 0.1.0" in installed.stdout and "asks for: notes.write" in installed.stdout
        assert "granted: notes.write" in flurry("skills", "info", "notes").stdout
        assert "nothing is waiting for you" in flurry("approvals").stdout

        # The node asks before running; with nobody at a terminal the command line says no.
        asked = flurry("ask", PLUMBER, "--json", input="")
        assert "A skill wants to run add_note" in asked.stderr
        tool = json.loads(asked.stdout)["tool"]
        assert tool["ran"] is False and "refused" in tool["reason"]
        assert "1 entries" in flurry("audit", "verify").stdout  # the refusal, recorded

        missing = flurry("skills", "remove", "nope", check=False)
        assert (
            missing.returncode == 1
            and "no skill named 'nope'" in missing.stderr
            and "Traceback" not in missing.stderr
        )
        flurry("skills", "remove", "notes")
        assert "no skills installed" in flurry("skills", "list").stdout


def test_install_mcp_shows_the_tools_before_registering(cli, tmp_path):
    """`flurry skills install-mcp` starts the server once and shows what it offers: refused
    (nobody at a terminal), nothing is registered; with --yes it is, tools and all."""
    # In process (CliRunner): the command's review and error paths; the MCP servers are real processes.
    cli("init")
    server = tmp_path / "shout_server.py"
    server.write_text(MCP_SERVER)
    refused = cli(
        "skills", "install-mcp", "shout", "--", sys.executable, str(server), input="", check=False
    )
    assert refused.returncode == 1 and "tool shout [ask]: Upper-cases a text." in refused.stdout
    assert "not approved; shout was removed again" in refused.stderr
    assert "no skills installed" in cli("skills", "list").stdout

    registered = cli("skills", "install-mcp", "--yes", "shout", "--", sys.executable, str(server))
    assert (
        "tool shout [ask]: Upper-cases a text." in registered.stdout
        and "registered shout" in registered.stdout
    )
    assert "enabled (unmanaged MCP)" in cli("skills", "list").stdout
    assert "tool shout [ask]: Upper-cases a text." in cli("skills", "info", "shout").stdout

    silent = cli(
        "skills",
        "install-mcp",
        "--yes",
        "mute",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(60)",
        check=False,
    )
    assert (
        silent.returncode == 1
        and "must answer initialize and list_tools within 10 s" in silent.stderr
    )
    assert "Traceback" not in silent.stderr and "mute" not in cli("skills", "list").stdout
