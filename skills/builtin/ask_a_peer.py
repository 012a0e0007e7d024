"""Ask another agent the owner pinned (`flurry peers add`), through the node's signed client."""

from skills.sdk import Skill, node


def ask_peer(peer: str, question: str) -> str:
    return node.ask_peer(peer, question)


def skill() -> Skill:
    return Skill(
        manifest={
            "name": "ask-a-peer",
            "version": "1.0.0",
            "description": "Asks another person's agent a question on the owner's behalf.",
            "permissions": ["peers.send"],
            "tools": [
                {
                    "name": "ask_peer",
                    "description": "Ask another person's agent (a peer) a question and bring back its answer.",
                    "parameters": {
                        "type": "object",
                        "required": ["peer", "question"],
                        "properties": {
                            "peer": {
                                "type": "string",
                                "description": "The peer's name, as the owner pinned it",
                            },
                            "question": {"type": "string", "description": "The question to ask"},
                        },
                    },
                },
            ],
        },
        tools={"ask_peer": ask_peer},
    )
