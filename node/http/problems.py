"""Problem responses (RFC 9457) and the one table from domain errors to HTTP statuses.

A route raises a `Problem` for a refusal it decides itself, or lets a domain error (a
refused grant, a pod conflict, a full queue) rise: `install` registers one handler per
class of `ERRORS`, and Starlette finds the handler by the error's class hierarchy, so a
subclass needs a row only when it answers differently from its base. A new error is one
row here. Under /v1 the same problems are written in OpenAI's error shape, which the apps
that speak that API read.

What is not in the table is not a refusal: it is a bug, and answers 500 with the traceback
in the node's log.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.grants import InvalidGrant, NotGranted, QuotaExceeded, TokenQuotaExceeded
from agent.queue import QueueFull
from agent.tokens import TokenError
from identity.did_key import InvalidDID
from identity.errors import SignatureRejected
from node.infer import InferRefused, PromptTooLarge
from node.limits import UnsafeJSON
from node.owner import NotFound, OwnerError
from skills.host import SkillError
from skills.registry import SkillInstallError
from store import pod_store

OPENAI_PATH = "/v1/"


class Problem(Exception):
    """An RFC 9457 problem: the client's fault or a refusal, never a crash."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status, self.title, self.detail, self.reason = status, title, detail, reason
        self.headers = headers or {}


@dataclass(frozen=True)
class Answer:
    """How one class of domain error answers: its status and title; the detail is the error's message."""

    status: int
    title: str
    headers: Callable[[Exception], dict[str, str]] = field(default=lambda error: {})
    reason: Callable[[Exception], str | None] = field(default=lambda error: None)


def _retry_after(error) -> dict[str, str]:
    return {
        "Retry-After": str(math.ceil(error.retry_after))
    }  # whole seconds (RFC 9110 delay-seconds)


ERRORS: dict[type[Exception], Answer] = {
    # who may do what
    SignatureRejected: Answer(
        401,
        "signature rejected",
        reason=lambda e: e.reason if isinstance(e, SignatureRejected) else None,
    ),
    NotGranted: Answer(403, "not granted"),
    QuotaExceeded: Answer(429, "quota exceeded", headers=_retry_after),
    # a peer's metered use of the model (node.infer): nothing is charged for any of these
    TokenQuotaExceeded: Answer(
        429, "token quota exceeded", headers=_retry_after, reason=lambda e: "token_quota_exceeded"
    ),
    InferRefused: Answer(400, "bad request"),
    PromptTooLarge: Answer(413, "too large", reason=lambda e: "prompt_too_large"),
    QueueFull: Answer(503, "busy", headers=_retry_after),
    UnsafeJSON: Answer(400, "bad request"),
    # the owner's operations (node.owner and what it calls)
    NotFound: Answer(404, "not found"),
    OwnerError: Answer(400, "refused"),
    InvalidGrant: Answer(400, "refused"),
    TokenError: Answer(400, "refused"),
    InvalidDID: Answer(400, "refused"),
    SkillInstallError: Answer(400, "refused"),
    SkillError: Answer(400, "refused"),
    # the pod (store.pod_store)
    pod_store.PodError: Answer(400, "bad request"),
    pod_store.NotFound: Answer(404, "not found"),
    pod_store.Conflict: Answer(409, "conflict"),
    pod_store.PreconditionFailed: Answer(412, "precondition failed"),
    pod_store.TooLarge: Answer(413, "too large"),
    pod_store.Unprocessable: Answer(422, "unprocessable patch"),
    pod_store.TooComplex: Answer(422, "too complex"),
}
# Every class the table answers for, for an `except` that must let them rise to it.
KNOWN: tuple[type[Exception], ...] = tuple(ERRORS)


def problem_for(error: Exception) -> Problem:
    """The problem a domain error answers as: the row of its nearest class in ERRORS."""
    answer = next(ERRORS[kind] for kind in type(error).__mro__ if kind in ERRORS)
    return Problem(
        answer.status,
        answer.title,
        str(error),
        reason=answer.reason(error),
        headers=answer.headers(error),
    )


def problem_response(problem: Problem) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.reason:
        body["reason"] = problem.reason
    return JSONResponse(
        body,
        status_code=problem.status,
        headers=problem.headers,
        media_type="application/problem+json",
    )


def install(app: FastAPI) -> None:
    """The app's exception handlers: problems, the table's domain errors, and /v1's own shape."""

    # Starlette types every handler as taking any Exception; each is registered for its own kind.
    async def on_problem(request: Request, problem: Exception) -> JSONResponse:
        assert isinstance(problem, Problem)
        if _is_openai_path(request):
            return openai_error_response(problem)
        return problem_response(problem)

    async def on_domain_error(request: Request, error: Exception) -> JSONResponse:
        return await on_problem(request, problem_for(error))

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        # Unknown paths and methods under /v1 answer as OpenAI does too; elsewhere, FastAPI's own.
        if _is_openai_path(request):
            return openai_error_response(
                Problem(error.status_code, "error", str(error.detail), headers=error.headers)
            )
        return await http_exception_handler(request, error)

    app.add_exception_handler(Problem, on_problem)
    for kind in ERRORS:
        app.add_exception_handler(kind, on_domain_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


# --- OpenAI's error shape, for /v1 ----------------------------------------------------------------

# OpenAI's error types by status; the client raises its typed exception from the status alone.
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def _is_openai_path(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PATH)


def openai_error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict:
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error_response(problem: Problem) -> JSONResponse:
    """A refusal on /v1 in OpenAI's error shape, which its clients read (the rest of the API
    answers problem+json). The status and headers (Retry-After) are the problem's own."""
    code = problem.reason or {401: "invalid_api_key"}.get(problem.status)
    body = openai_error_body(
        problem.status, problem.detail, code=code, param=getattr(problem, "param", None)
    )
    return JSONResponse(body, status_code=problem.status, headers=problem.headers)
