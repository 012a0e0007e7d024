"""The pod's storage: LDP basic containers and the resources in them, sealed in the vault.

A pod path is decoded text: '/pod/' is the root container, a path ending in '/' is a
container, any other a resource. Each entry is two sealed vault records found by an HMAC of
its path (so no path reaches the disk in the clear): ``pod`` holds what describes it (media
type, ETag, size, times, a container's member names) and ``pod-body`` a resource's bytes.
A write changes the entry, the containers it creates on the way and its parent's member
list in one vault transaction, so a crash never leaves a member its container does not list.

RDF sources (Turtle, JSON-LD) are checked as they are written and kept as sent. Checking
parses someone else's bytes, so it runs in a parser process (store.parse_process) within a
time budget; a body not parsed within it is refused (TooComplex) and nothing is stored. Each
is also rendered as plain text (store.rdf.graph_text) and handed to ``on_change``, which has
it indexed as a document tagged "pod" (store.pod_index: in the background, within a budget),
so that questions can draw on it; the document is replaced when the resource changes and
removed when it goes. The indexing comes after the write: if the node dies in between, the
resource is stored and the text index shows the older version until it is written again.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rdflib import Graph

from store import parse_process
from store.errors import StoreError
from store.parse_process import Budget, OverBudget
from store.rdf import (
    RDF_TYPES,
    TURTLE,
    InvalidPatch,
    N3Patch,
    PatchConflict,
    RDFSyntaxError,
    apply_patch,
    parse,
    rdf_text,
    serialize,
)
from store.vault import Vault

POD_ROOT = "/pod/"
# A resource is read whole to check its signature's content-digest, sealed as one AES-GCM
# message and kept in one SQLite row (as base64: a third larger). Contacts, bookmarks and
# notes are kilobytes; 4 MiB leaves room for a photo but keeps large media out of the vault's rows.
MAX_RESOURCE_BYTES = 4 * 1024 * 1024
INDEX_TAG = "pod"
# Checking a body: rdflib reads a few MB a second, so 4 MiB of Turtle needs a few seconds.
PARSE_BUDGET = Budget(seconds=20.0, seconds_per_mib=5.0)
_META, _BODY = "pod", "pod-body"
_SLUG_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PodError(StoreError):
    """The pod cannot do what was asked; the message says why."""


class InvalidPath(PodError):
    pass


class NotFound(PodError):
    pass


class Conflict(PodError):
    """The request clashes with what is there (a non-empty container, a resource named like a container)."""


class PreconditionFailed(PodError):
    """If-Match / If-None-Match did not hold."""


class InvalidBody(PodError):
    """The body does not parse as its media type."""


class TooLarge(PodError):
    pass


class TooComplex(PodError):
    """The body was not read within its time budget."""


class Unprocessable(PodError):
    """The body is well-formed but not something this pod can apply (an N3 Patch that breaks the protocol's rules)."""


@dataclass(frozen=True)
class Entry:
    path: str
    etag: str
    modified: float
    content_type: str | None = None  # None for a container
    size: int = 0
    members: tuple[str, ...] = ()  # a container's member names; sub-containers end in '/'

    @property
    def is_container(self) -> bool:
        return self.path.endswith("/")

    @property
    def is_rdf(self) -> bool:
        return self.is_container or self.content_type in RDF_TYPES


def check_path(path: str) -> str:
    """``path`` if it is a well-formed pod path (decoded), or InvalidPath saying what is wrong."""
    if not isinstance(path, str) or not path.startswith(POD_ROOT):
        raise InvalidPath(f"pod paths start with {POD_ROOT!r}, not {path!r}")
    if path == POD_ROOT:
        return path
    inner = path[len(POD_ROOT) :].removesuffix("/")
    for segment in inner.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidPath(f"{path!r}: a path may not hold an empty, '.' or '..' segment")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
            raise InvalidPath(f"{path!r}: a path may not hold control characters")
        if len(segment.encode()) > 255:
            raise InvalidPath(f"{path!r}: a segment is longer than 255 bytes")
    return path


def parent_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] + "/"


def name_of(path: str) -> str:
    """The member name of ``path`` in its container ('ana.ttl', 'contacts/')."""
    return path[len(parent_of(path)) :]


class PodStore:
    def __init__(
        self, vault: Vault, on_change: Callable[[str, str | None], None] | None = None
    ) -> None:
        """``on_change(path, text)`` is told of every change to an RDF resource once it is
        stored: its text for the indexes, or None when it is gone (None: nobody is told)."""
        self._vault = vault
        self._on_change = on_change
        # Writes read a container's member list and write it back: one writer at a time.
        self._lock = threading.Lock()

    # --- reading ---------------------------------------------------------------------------

    def get(self, path: str) -> Entry | None:
        check_path(path)
        record = self._vault.get_record(_META, path)
        if record is None:
            # The root exists before anything is written to it.
            return Entry(POD_ROOT, '"empty"', 0.0) if path == POD_ROOT else None
        return _entry(path, record)

    def read(self, path: str) -> tuple[Entry, bytes]:
        entry = self.get(path)
        if entry is None:
            raise NotFound(f"nothing at {path}")
        if entry.is_container:
            return entry, b""
        body = self._vault.get_record(_BODY, path)
        return entry, base64.b64decode(body["data"]) if body else b""

    def missing(self, path: str) -> list[str]:
        """``path`` and the containers above it that do not exist yet, nearest first: what a
        write to ``path`` would create (access is checked on each one's container)."""
        check_path(path)
        out = []
        while path != POD_ROOT and self.get(path) is None:
            out.append(path)
            path = parent_of(path)
        return out

    # --- writing ---------------------------------------------------------------------------

    def put(
        self,
        path: str,
        body: bytes,
        content_type: str,
        *,
        base: str,
        if_match: list[str] | None = None,
        if_none_match: list[str] | None = None,
    ) -> tuple[Entry, bool]:
        """Create or replace the resource at ``path``; returns the entry and whether it is new.
        RDF bodies are parsed with ``base`` (the resource's URL) as the base IRI."""
        check_path(path)
        if path.endswith("/"):
            raise Conflict(
                f"{path} is a container; a container is made empty and lists its members"
            )
        if len(body) > MAX_RESOURCE_BYTES:
            raise TooLarge(
                f"the body has {len(body)} bytes; a pod resource holds at most {MAX_RESOURCE_BYTES}"
            )
        text = None
        if content_type in RDF_TYPES:
            try:
                text = parse_process.run(
                    rdf_text, body, content_type, base, seconds=PARSE_BUDGET.seconds_for(len(body))
                )
            except RDFSyntaxError as e:
                raise InvalidBody(f"the body is not valid {content_type}: {e}") from None
            except OverBudget as e:
                raise TooComplex(f"the body {e}; nothing was stored") from None
        now = time.time()
        with self._lock:
            existing = self.get(path)
            _preconditions(existing, if_match, if_none_match)
            if self.get(path + "/") is not None:
                raise Conflict(f"{path}/ is a container; a resource may not share its name")
            entry = Entry(path, _new_etag(), now, content_type, len(body))
            puts = self._created_containers(path, now) + [
                (_META, path, _record(entry)),
                (_BODY, path, {"data": base64.b64encode(body).decode()}),
            ]
            self._vault.write_records(puts)
        self._index(path, text, was_rdf=existing is not None and existing.is_rdf)
        return entry, existing is None

    def patch(
        self, path: str, patch: N3Patch, *, base: str, if_match: list[str] | None = None
    ) -> tuple[Entry, bool]:
        """Apply an N3 Patch to the RDF resource at ``path``, or to an empty graph when there is
        none yet (then it is created as Turtle); returns the entry and whether it is new. The
        result is kept in the resource's own syntax. The write checks the ETag it read, so no
        concurrent change is lost in between (the patch is refused as a Conflict instead)."""
        check_path(path)
        if path.endswith("/"):
            raise Conflict(
                f"{path} is a container: its listing is made from its members, not patched"
            )
        existing = self.get(path)
        _preconditions(existing, if_match, None)
        if existing is not None and not existing.is_rdf:
            raise Conflict(
                f"{path} holds {existing.content_type}, not RDF: an N3 Patch applies to Turtle or JSON-LD"
            )
        # (a resource always has a content type; only containers have none, refused above)
        content_type = (existing.content_type if existing is not None else None) or TURTLE
        graph = parse(self.read(path)[1], content_type, base) if existing is not None else Graph()
        try:
            apply_patch(graph, patch)
        except PatchConflict as e:
            raise Conflict(str(e)) from None
        except InvalidPatch as e:
            raise Unprocessable(str(e)) from None
        body = serialize(graph, content_type, base=base)
        try:
            if existing is None:
                return self.put(path, body, content_type, base=base, if_none_match=["*"])
            return self.put(path, body, content_type, base=base, if_match=[existing.etag])
        except PreconditionFailed:
            raise Conflict(f"{path} changed while the patch was applied; send it again") from None

    def make_container(
        self, path: str, *, if_none_match: list[str] | None = None
    ) -> tuple[Entry, bool]:
        """Create the container ``path`` (and those above it); an existing one is left as it is."""
        check_path(path)
        if not path.endswith("/"):
            raise InvalidPath(f"{path!r}: a container's path ends with '/'")
        with self._lock:
            record = self._vault.get_record(_META, path)
            if record is not None:
                existing = _entry(path, record)
                _preconditions(existing, None, if_none_match)
                return existing, False
            if path != POD_ROOT and self.get(path.rstrip("/")) is not None:
                raise Conflict(
                    f"{path.rstrip('/')} is a resource; a container may not share its name"
                )
            entry = Entry(path, _new_etag(), time.time())
            self._vault.write_records(
                self._created_containers(path, entry.modified) + [(_META, path, _record(entry))]
            )
        return entry, True

    def post(
        self,
        container: str,
        slug: str | None,
        body: bytes,
        content_type: str | None,
        *,
        base_of: Callable[[str], str],
        as_container: bool,
    ) -> Entry:
        """A new member of ``container`` named after ``slug`` (made unique); its path is in the entry."""
        check_path(container)
        if not container.endswith("/"):
            raise InvalidPath(f"{container!r}: POST goes to a container, a path ending with '/'")
        found = self.get(container)
        if found is None:
            raise NotFound(f"no container at {container}")
        name = _SLUG_SAFE.sub("-", slug or "").strip(".-")[:64] or uuid.uuid4().hex[:12]
        taken = set(found.members)
        while name in taken or name + "/" in taken:
            name = f"{name}-{uuid.uuid4().hex[:6]}"
        path = container + name
        if as_container:
            return self.make_container(path + "/")[0]
        return self.put(
            path,
            body,
            content_type or "application/octet-stream",
            base=base_of(path),
            if_none_match=["*"],
        )[0]

    def delete(self, path: str, *, if_match: list[str] | None = None) -> None:
        check_path(path)
        if path == POD_ROOT:
            raise Conflict("the pod's root container cannot be deleted")
        with self._lock:
            existing = self.get(path)
            if existing is None:
                raise NotFound(f"nothing at {path}")
            _preconditions(existing, if_match, None)
            if existing.members:
                raise Conflict(
                    f"{path} is not empty ({len(existing.members)} members); delete them first"
                )
            parent = self.get(parent_of(path))
            assert parent is not None, "every entry but the root is in a container"
            members = tuple(m for m in parent.members if m != name_of(path))
            self._vault.write_records(
                [
                    (
                        _META,
                        parent.path,
                        _record(Entry(parent.path, _new_etag(), time.time(), None, 0, members)),
                    )
                ],
                deletes=[(_META, path), (_BODY, path)],
            )
        self._index(path, None, was_rdf=existing.content_type in RDF_TYPES)

    # --- inside -----------------------------------------------------------------------------

    def _created_containers(self, path: str, now: float) -> list[tuple[str, str, dict[str, Any]]]:
        """Records for the containers a write to ``path`` creates, and for the nearest existing
        one, which gains a member. Called under the lock."""
        puts: list[tuple[str, str, dict[str, Any]]] = []
        child = path
        while child != POD_ROOT:
            parent = parent_of(child)
            if parent != POD_ROOT and self.get(parent.rstrip("/")) is not None:
                raise Conflict(f"{parent.rstrip('/')} is a resource; it cannot hold {path}")
            record = self._vault.get_record(_META, parent)
            name = name_of(child)
            if record is not None:
                entry = _entry(parent, record)
                if name not in entry.members:
                    grown = Entry(
                        parent, _new_etag(), now, None, 0, tuple(sorted({*entry.members, name}))
                    )
                    puts.append((_META, parent, _record(grown)))
                return puts
            puts.append((_META, parent, _record(Entry(parent, _new_etag(), now, None, 0, (name,)))))
            child = parent
        return puts

    def _index(self, path: str, text: str | None, *, was_rdf: bool) -> None:
        if self._on_change is not None and (text is not None or was_rdf):
            self._on_change(path, text)


def _preconditions(
    existing: Entry | None, if_match: list[str] | None, if_none_match: list[str] | None
) -> None:
    # RFC 9110 §13.1.1 and §13.1.2, for state-changing methods.
    if if_match is not None and (
        existing is None or ("*" not in if_match and existing.etag not in if_match)
    ):
        raise PreconditionFailed(
            "If-Match: the resource has changed (or is gone) since you read it"
        )
    if (
        if_none_match is not None
        and existing is not None
        and ("*" in if_none_match or existing.etag in if_none_match)
    ):
        raise PreconditionFailed("If-None-Match: something is there already")


def _new_etag() -> str:
    return f'"{uuid.uuid4().hex}"'


def _record(entry: Entry) -> dict[str, Any]:
    return {
        "etag": entry.etag,
        "modified": entry.modified,
        "content_type": entry.content_type,
        "size": entry.size,
        "members": list(entry.members),
    }


def _entry(path: str, record: dict[str, Any]) -> Entry:
    return Entry(
        path,
        record["etag"],
        record["modified"],
        record["content_type"],
        record["size"],
        tuple(record["members"]),
    )
