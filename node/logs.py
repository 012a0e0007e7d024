"""What `flurry serve` writes to stderr: text lines (the default) or JSON lines.

A JSON line is one object: ``time`` (UTC, ISO 8601), ``level``, ``event`` (a short name:
"serving", "stopped", or the logger's name for a library's record), ``message`` (the line a
person would read) and ``fields`` (the event's values: a URL, a DID, a pid). Under systemd the
journal keeps them; `flurry service logs` reads them back.

Logs never hold the owner's text: no question, answer, document text, chat message or
document path is ever put in a log call by the node; uvicorn's access log (URLs with their
query strings) stays off; a library's record keeps its message's wording but not the values
filled into it (the A2A SDK fills a refused request's parse error, which quotes the request,
into its line); and an exception is logged by its type and its stack only: its message may
quote what failed (a chunk, a path, a question). In both formats. tests/test_service.py sends
a canary through the real app and looks for it here.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

from node.errors import NodeError

FORMATS = ("text", "json")
WITHHELD = "(message withheld from the log: it may quote the owner's data)"
# Whose log calls fill in only values that are not the owner's text (the project's own
# packages, checked by hand and by the canary test); every other logger's values are withheld.
OWN_LOGGERS = ("flurry", "node", "agent", "store", "skills", "identity", "tui")


class LogFormatError(NodeError):
    """config.json names a log format flurry does not write."""


def _exception_lines(exc: BaseException) -> list[str]:
    """The traceback of ``exc`` and of its causes, each exception named by its type alone."""
    lines: list[str] = []
    seen: set[int] = set()

    def walk(te: traceback.TracebackException) -> None:
        if id(te) in seen:
            return
        seen.add(id(te))
        if te.__cause__ is not None:
            walk(te.__cause__)
            lines.append("The above exception was the direct cause of the following exception:")
        elif te.__context__ is not None and not te.__suppress_context__:
            walk(te.__context__)
            lines.append("During handling of the above exception, another exception occurred:")
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in te.stack.format())
        kind = te.exc_type.__qualname__ if te.exc_type is not None else "Exception"
        lines.append(f"{kind}: {WITHHELD}")
        for inner in te.exceptions or ():  # an ExceptionGroup (anyio's task groups raise them)
            lines.append(f"  sub-exception of {kind}:")
            walk(inner)

    walk(traceback.TracebackException.from_exception(exc))
    return lines


def message(record: logging.LogRecord) -> str:
    """The record's line; from a library, its wording with each value shown as "…"."""
    if record.name.partition(".")[0] in OWN_LOGGERS or not record.args:
        return record.getMessage()
    args = record.args
    try:
        if isinstance(args, dict):
            return str(record.msg) % {key: "…" for key in args}
        return str(record.msg) % tuple("…" for _ in args)
    except (TypeError, ValueError, KeyError):
        return str(record.msg)


def _exception(record: logging.LogRecord) -> BaseException | None:
    info = record.exc_info
    return info[1] if info and info[1] is not None else None


class TextFormatter(logging.Formatter):
    """``2026-12-02 03:04:05 WARNING node.a2a: message``, and a traceback without messages."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = self.formatMessage(_prepared(record, self))
        error = _exception(record)
        return "\n".join([line, *_exception_lines(error)]) if error else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or record.name,
            "message": message(record),
            "fields": dict(getattr(record, "fields", None) or {}),
        }
        error = _exception(record)
        if error is not None:
            entry["error"] = type(error).__qualname__
            entry["traceback"] = _exception_lines(error)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _prepared(record: logging.LogRecord, formatter: logging.Formatter) -> logging.LogRecord:
    record.message = message(record)
    record.asctime = formatter.formatTime(record, formatter.datefmt)
    return record


def configure(log_format: str, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send every record (the node's, uvicorn's, the libraries', Python's warnings) to
    ``stream`` (stderr) in ``log_format``. Libraries log from WARNING up: their INFO lines
    (httpx names every URL it calls) are no business of the node's log."""
    if log_format not in FORMATS:
        raise LogFormatError(
            f"unknown log format {log_format!r} (config.json's log_format): choose text or json"
        )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("flurry").setLevel(level)
    logging.captureWarnings(True)


def event(name: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log the node's own event ``name`` with its ``fields`` (never the owner's text)."""
    logging.getLogger(f"flurry.{name}").log(
        level, "%s", message, extra={"event": name, "fields": fields}
    )
