"""Look up an appointment or a person in the owner's calendar and contacts (documents added
with `flurry add … --tag calendar` or `--tag contacts`)."""

from skills.sdk import Skill, node


def _lookup(query: str, tag: str) -> str:
    found = node.search(query, k=3, tags=[tag])
    if not found:
        return f"Nothing in the {tag} matches that."
    return "\n".join(f"- {hit['snippet']} ({hit['path']})" for hit in found)


def find_event(query: str) -> str:
    return _lookup(query, "calendar")


def find_contact(query: str) -> str:
    return _lookup(query, "contacts")


def _one_query(description: str) -> dict:
    return {
        "type": "object",
        "required": ["query"],
        "properties": {"query": {"type": "string", "description": description}},
    }


def skill() -> Skill:
    return Skill(
        manifest={
            "name": "lookup",
            "version": "1.0.0",
            "description": "Finds appointments in the owner's calendar and people in their contacts.",
            "permissions": ["vault.read:tags=calendar,contacts"],
            "tools": [
                {
                    "name": "find_event",
                    "description": "Look up an appointment, meeting or event in the calendar.",
                    "parameters": _one_query("The event, or who or what it is with"),
                },
                {
                    "name": "find_contact",
                    "description": "Look up a person's phone number, email or address in the contacts.",
                    "parameters": _one_query("The person's name"),
                },
            ],
        },
        tools={"find_event": find_event, "find_contact": find_contact},
    )
