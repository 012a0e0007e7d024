"""The owner's requests: the JSON body, its fields, and calling the node's owner operations.

Every /api/owner/… route reads its body with `owner_body` and calls `owner_call`; the plain
ones, a row of an operation table each (node.owner.OPERATIONS), are made by `serve_operations`.
The owner
check is not repeated here: it is declared once, where those routers are included
(node.http.app), and FastAPI runs a router's dependencies before the route's own, so no
body is parsed for anyone else. The body is JSON within node.limits' bounds, and what the
operation refuses answers by node.http.problems' table.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from node.http.problems import KNOWN, Problem
from node.limits import parse_json
from node.owner import NOTHING, OWNER_PREFIX, Operation


async def owner_body(request: Request) -> dict:
    """The request's JSON object ({} when there is no body); 400 for anything else."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = parse_json(raw)
    except ValueError:
        raise Problem(400, "bad request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Problem(400, "bad request", "the body must be a JSON object")
    return body


BodyDep = Annotated[dict, Depends(owner_body)]


def required(body: dict, key: str) -> Any:
    if key not in body:
        raise Problem(400, "bad request", f"missing field: {key}")
    return body[key]


def text_field(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Problem(400, "bad request", f'send a non-empty string "{name}"')
    return value.strip()


async def owner_call(call: Callable, *args: Any) -> Any:
    """``call(*args)``, off the event loop unless it is a coroutine function (vault reads and
    writes block). A refusal rises to the table; a field the body lacks or gets wrong is 400."""
    try:
        if inspect.iscoroutinefunction(call):
            return await call(*args)
        return await asyncio.to_thread(call, *args)
    except KNOWN:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise malformed(e) from None


def malformed(error: Exception) -> Problem:
    return Problem(400, "bad request", f"missing or malformed field: {error}")


Read = Callable[[Operation, dict], tuple]  # an operation's arguments, from the owner's body


def fields_or_defaults(
    optional: Mapping[tuple[str, str], Any] = {},  # noqa: B006 (read only)
    convert: Mapping[str, Callable[[Any], Any]] = {},  # noqa: B006 (read only)
) -> Read:
    """Each of the row's fields as sent (`required`: 400 when missing), except those
    ``optional`` names by (operation, field), which a hand-made request may leave out; a
    field ``convert`` names is passed through its function (str, list). A "body" row's one
    argument is the whole body."""

    def field(operation: Operation, body: dict, name: str) -> Any:
        if (operation.name, name) in optional:
            value = body.get(name, optional[operation.name, name])
        else:
            value = required(body, name)
        return convert[name](value) if name in convert else value

    def read(operation: Operation, body: dict) -> tuple:
        if operation.send == "body":
            return (body,)
        return tuple(field(operation, body, name) for name in operation.fields)

    return read


def serve_operations(
    router: APIRouter, operations: tuple[Operation, ...], get_owner: Callable, read: Read
) -> None:
    """One route on ``router`` per row: the row's method and path under /api/owner, its
    arguments read from the body by ``read`` (a field it lacks or gets wrong is 400), the
    ``get_owner`` dependency's method of the row's name called by `owner_call`, and its
    answer shaped as the row says (the answer; {returns: answer}; or {"ok": true})."""
    for operation in operations:
        router.add_api_route(
            OWNER_PREFIX + operation.path,
            _endpoint(operation, get_owner, read),
            methods=[operation.method],
            name=operation.name,
        )


def _endpoint(operation: Operation, get_owner: Callable, read: Read) -> Callable:
    async def endpoint(body: BodyDep, owner: Any = Depends(get_owner)) -> Any:  # noqa: B008 (FastAPI's way)
        try:
            args = read(operation, body)
        except (KeyError, TypeError, ValueError) as e:
            raise malformed(e) from None
        answer = await owner_call(getattr(owner, operation.name), *args)
        if operation.returns is NOTHING:
            return {"ok": True}
        return answer if operation.returns is None else {operation.returns: answer}

    endpoint.__name__ = operation.name
    return endpoint
