"""The owner's requests: the JSON body, its fields, and calling the node's owner operations.

Every /api/owner/… route reads its body with `owner_body` and calls `owner_call`. The owner
check is not repeated here: it is declared once, where those routers are included
(node.http.app), and FastAPI runs a router's dependencies before the route's own, so no
body is parsed for anyone else. The body is JSON within node.limits' bounds, and what the
operation refuses answers by node.http.problems' table.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from node.http.problems import KNOWN, Problem
from node.limits import parse_json


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
        raise Problem(400, "bad request", f"missing or malformed field: {e}") from None
