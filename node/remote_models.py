"""The remote chat models the owner named (issue 19): OpenAI-compatible servers on other
boxes of the household, kept sealed in the vault (kind ``model-remote``, key: the name), the
API key with them. `flurry models use chat remote:NAME` makes one the node's chat model
(node.node: a FailoverChatModel, the local model behind it).

A record: {name, url, model, key, allow_peers, added_at}. ``allow_peers`` False (the default):
peers' questions are answered by the local model, so what a peer asks never makes the owner's
data travel to another box; True: they go to the remote too, without a receipt (no token-exact
record can be made of a remote reply).
"""

from __future__ import annotations

import re
import time
from typing import Any

from agent.remote_model import Remote, RemoteError, check_url
from node.errors import OwnerError
from store.vault import Vault

KIND = "model-remote"
PREFIX = "remote:"
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
MAX_KEY_CHARS = 4096


def add(
    vault: Vault,
    name: str,
    url: str,
    model: str = "",
    key: str | None = None,
    allow_peers: bool = False,
) -> dict[str, Any]:
    if not NAME.fullmatch(name):
        raise OwnerError(f"{name!r}: a remote's name is lowercase letters, digits, . _ -")
    try:
        check_url(url)
    except RemoteError as error:
        raise OwnerError(str(error)) from None
    if key is not None and (len(key) > MAX_KEY_CHARS or not key.isprintable() or not key.strip()):
        raise OwnerError("the API key is one line of printable text")
    if len(model) > 200 or not model.isprintable():
        raise OwnerError("the model's name is one short line")
    record = {
        "name": name,
        "url": url,
        "model": model,
        "key": key.strip() if key else None,
        "allow_peers": bool(allow_peers),
        "added_at": time.time(),
    }
    vault.put_record(KIND, name, record)
    return shown(record)


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """What the owner is shown of a record: everything but the key itself."""
    return {
        **{k: v for k, v in record.items() if k != "key"},
        "key": "sealed" if record["key"] else None,
    }


def listed(vault: Vault) -> list[dict[str, Any]]:
    return [shown(record) for _, record in vault.records(KIND)]


def remove(vault: Vault, name: str) -> bool:
    return vault.delete_record(KIND, name)


def find(vault: Vault, name: str) -> tuple[Remote, bool]:
    """The remote ``name`` (``remote:`` prefix or not) and whether peers may use it."""
    name = name.removeprefix(PREFIX)
    record = vault.get_record(KIND, name)
    if record is None:
        raise OwnerError(
            f"no remote model {name!r}: add it with `flurry models remote add {name} URL`"
        )
    return Remote(name, record["url"], record["model"], record["key"]), bool(record["allow_peers"])
