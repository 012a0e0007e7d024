"""Remember things for the owner, and find them again."""

from skills.sdk import Skill, node


def remember(text: str) -> str:
    title = " ".join(text.split()[:6])
    return f"Noted in {node.write_note(title, text)}"


def recall(query: str) -> str:
    found = node.search(query, k=3, tags=["notes"])
    if not found:
        return "No note matches that."
    return "\n".join(f"- {hit['snippet']} ({hit['path']})" for hit in found)


def skill() -> Skill:
    return Skill(
        manifest={
            "name": "notes",
            "version": "1.0.0",
            "description": "Remembers short notes for the owner and finds them again.",
            "permissions": ["notes.write", "vault.read:tags=notes"],
            "tools": [
                {
                    "name": "remember",
                    "description": "Add a note: remember something for later, write it down.",
                    # One plain parameter: the 135M default model copies a parameter's description
                    # into the call when there are several (measured: "A few words naming the note").
                    "parameters": {
                        "type": "object",
                        "required": ["text"],
                        "properties": {"text": {"type": "string"}},
                    },
                },
                {
                    "name": "recall",
                    "description": "Find the notes written earlier about something.",
                    "parameters": {
                        "type": "object",
                        "required": ["query"],
                        "properties": {"query": {"type": "string"}},
                    },
                },
            ],
        },
        tools={"remember": remember, "recall": recall},
    )
