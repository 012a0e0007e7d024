"""The one table of owner operations (node.owner.OPERATIONS) against what serves and calls it:
the app's routes, the Owner protocol, LocalOwner and the RemoteOwner made from the table.

The real app and the real node (no model loads: nothing here asks a question); the routes are
read from ``app.routes``, so the check holds whichever module declares them."""

from __future__ import annotations

import asyncio
import inspect
import time
import warnings
from collections.abc import Iterator

import pytest
from conftest import Served, new_node
from fastapi.openapi.utils import get_openapi

import node.owner as owner_module
from identity.did_key import verification_method_id
from identity.signing_client import signed_client
from node.api import create_app
from node.node import Node
from node.nostr_owner import (
    NOSTR_OPERATIONS,
    LocalNostrOwner,
    NostrOwner,
    RemoteNostrOwner,
)
from node.owner import (
    OPERATIONS,
    OWNER_PREFIX,
    LocalOwner,
    Operation,
    Owner,
    RemoteOwner,
    check_operations,
)


@pytest.fixture(scope="module")
def node(tmp_path_factory, models_dir) -> Iterator[Node]:
    node = new_node(tmp_path_factory.mktemp("owner-ops"), models_dir)
    yield node
    node.close()


def _routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route in ``app.routes``, through included routers too: FastAPI's
    own OpenAPI walk does that for any layout (routes on the app, or APIRouters included with
    prefixes and dependencies, which recent FastAPI keeps unflattened)."""
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # duplicate operation ids (one function, several methods) do not matter here
        spec = get_openapi(title="flurry", version="0", routes=app.routes)
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
    }


def test_every_operation_in_the_table_is_a_route_of_the_app(node):
    served = _routes(create_app(node))
    missing = [
        f"{o.method} {OWNER_PREFIX}{o.path} ({o.name})"
        for o in (*OPERATIONS, *NOSTR_OPERATIONS)
        if (o.method, OWNER_PREFIX + o.path) not in served
    ]
    assert not missing, f"in node.owner.OPERATIONS but not served: {missing}"
    assert ("POST", OWNER_PREFIX + "/no-such-operation") not in served and (
        "DELETE",
        OWNER_PREFIX + "/grants",
    ) not in served


def test_the_protocol_tells_the_truth_about_async():
    """Where LocalOwner goes to the network it is async; the protocol says so, and RemoteOwner,
    made from the table, is awaited the same way."""
    for operations, local_owner, protocol, remote_owner in (
        (OPERATIONS, LocalOwner, Owner, RemoteOwner),
        (NOSTR_OPERATIONS, LocalNostrOwner, NostrOwner, RemoteNostrOwner),
    ):
        for operation in operations:
            local = inspect.iscoroutinefunction(getattr(local_owner, operation.name))
            assert inspect.iscoroutinefunction(getattr(protocol, operation.name)) == local, (
                operation.name
            )
            assert inspect.iscoroutinefunction(getattr(remote_owner, operation.name)) == local, (
                operation.name
            )
    assert inspect.iscoroutinefunction(LocalOwner.send) and inspect.iscoroutinefunction(
        LocalOwner.add_peer
    )


def test_a_row_without_its_method_or_protocol_line_is_refused(monkeypatch):
    monkeypatch.setattr(
        owner_module,
        "OPERATIONS",
        (*OPERATIONS, Operation("rename_node", "POST", "/rename", ("name",))),
    )
    with pytest.raises(TypeError, match="rename_node"):
        check_operations()
    wrong_arity = tuple(
        Operation(o.name, o.method, o.path, (*o.fields, "extra")) if o.name == "remove_grant" else o
        for o in OPERATIONS
    )
    monkeypatch.setattr(owner_module, "OPERATIONS", wrong_arity)
    with pytest.raises(TypeError, match="remove_grant"):
        check_operations()


def test_the_remote_owner_made_from_the_table_works_over_http(node):
    """Through the real app on loopback, signed by the owner: values cross as the table says
    (a whole body, a query, a wrapped field, nothing), and an error keeps its status."""
    served = Served(node)
    try:
        keys = node.keys
        with signed_client(
            keys.owner_key, verification_method_id(keys.owner_did), base_url=served.url, timeout=60
        ) as http:
            remote = RemoteOwner(http)
            grant = {
                "did": keys.node_did,
                "allow": ["ask"],
                "tags": ["travel"],
                "quota": None,
                "note": "me",
                "created_at": time.time(),
            }
            assert remote.add_grant(grant) is None  # send="body", returns nothing
            assert [g["did"] for g in remote.list_grants()] == [keys.node_did]
            assert remote.remove_grant(keys.node_did) is True  # a wrapped field
            assert remote.remove_grant(keys.node_did) is False
            token = remote.create_token("app", ["chat"])
            assert token.startswith("flurry_") and [t["name"] for t in remote.list_tokens()] == [
                "app"
            ]
            with pytest.raises(owner_module.OwnerError, match="404"):
                remote.skill("nope")  # a query, and NotFound → 404
            with pytest.raises(owner_module.OwnerError, match="no pinned peer"):
                asyncio.run(remote.send("nobody", "hi"))  # async, as LocalOwner.send
    finally:
        served.stop()
