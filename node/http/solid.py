"""The Solid protocol's wire details for the pod routes (node.http.pod): CORS, content
negotiation, the LDP/WAC headers, percent-decoded paths, and the cache of RDF renderings.

Nothing here decides access; the routes do (agent.grants.pod_access).
"""

from __future__ import annotations

import email.utils
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.grants import PodAccess
from identity.webid import PROFILE_PATH, webid
from node.http.problems import Problem
from node.node import Node
from store.pod_store import POD_ROOT, Entry, InvalidPath, check_path
from store.rdf import (
    JSON_LD,
    N3,
    PIM,
    RDF_TYPES,
    SOLID,
    TURTLE,
    container_graph,
    parse,
    serialize,
)

LDP = "http://www.w3.org/ns/ldp#"
ACL_PREFIX = "/acl"  # /acl/pod/contacts/ is the WAC document of /pod/contacts/
OFFERED = [TURTLE, JSON_LD]  # what an RDF source can be read as
ACCEPTED = f"{TURTLE}, {JSON_LD}, */*"
STORAGE_DESCRIPTION_PATH = "/.well-known/solid"
# Percent-decoding a segment to one of these would change what the path means.
_RESERVED_IN_SEGMENT = ("/",)


# --- CORS (Solid Protocol, "Cross-Origin Resource Sharing") --------------------------------------------

CORS_PATHS = ("/pod/", ACL_PREFIX + "/pod/", PROFILE_PATH, STORAGE_DESCRIPTION_PATH)
# Every header these routes send, so that a Solid app in a browser can read them.
EXPOSED_HEADERS = [
    "Accept-Patch",
    "Accept-Post",
    "Accept-Put",
    "Allow",
    "Content-Length",
    "Content-Type",
    "ETag",
    "Last-Modified",
    "Link",
    "Location",
    "Retry-After",
    "Vary",
    "WAC-Allow",
    "WWW-Authenticate",
]


class _EmptyPreflightCORS(CORSMiddleware):
    """Starlette's CORS, but an accepted preflight is 204 with no body (Starlette sends 200
    "OK"; the Solid specification tests expect an empty preflight response)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 200:
            return response
        headers = {
            k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")
        }
        return Response(status_code=204, headers=headers)


class PodCORS:
    """CORS on the pod's routes only, as the Solid Protocol asks: any origin is echoed back, any
    request header and method of the pod is allowed, every response header is readable, and a
    preflight OPTIONS is answered here, before any signature check. Access is never decided by
    CORS: a request the grants refuse still gets its 401/403. No cookie or ambient credential
    authenticates anything on this node (requests are signed), so echoing the origin lends a
    web page nothing it could not send itself. The rest of the API sends no CORS headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = _EmptyPreflightCORS(
            app,
            allow_origins=["*"],
            allow_credentials=True,  # with "*", Starlette then echoes the request's Origin, as Solid wants
            allow_methods=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "*"
            ],  # echoes what the preflight asks for (Accept, Signature, Slug, If-Match, …)
            expose_headers=EXPOSED_HEADERS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CORS_PATHS):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


# --- reading ------------------------------------------------------------------------------------


class Renderings:
    """The last RDF renderings (a container's listing, a conversion to the other syntax), by
    URL, ETag and media type. rdflib takes tens of milliseconds for a few hundred triples, and
    an ETag changes with every write, so a kept rendering is never stale. Bounded in bytes."""

    def __init__(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._kept: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._bytes, self._max = 0, max_bytes
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str], render: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        body = render()
        with self._lock:
            if key not in self._kept and len(body) <= self._max // 4:
                self._kept[key] = body
                self._bytes += len(body)
                while self._bytes > self._max:
                    self._bytes -= len(self._kept.popitem(last=False)[1])
        return body


def read_resource(
    node: Node, request: Request, path: str, access: PodAccess, base: str, rendered: Renderings
) -> Response:
    entry, body = node.pod.read(path)
    headers = resource_headers(path, entry, access, base)
    if entry.etag in (etags(request.headers.get("if-none-match")) or ()):
        return Response(status_code=304, headers=headers)
    url = url_of(base, path)
    if entry.is_container:
        media_type = negotiate(request.headers.get("accept"), TURTLE)

        def listing() -> bytes:
            graph = container_graph(
                url, [url_of(base, path + member) for member in entry.members], entry.modified
            )
            return serialize(graph, media_type, base=url)

        body = rendered.get((url, entry.etag, media_type), listing)
    elif entry.content_type in RDF_TYPES:
        stored_type = entry.content_type
        assert stored_type is not None  # one of RDF_TYPES
        media_type = negotiate(request.headers.get("accept"), stored_type)
        if media_type != stored_type:  # kept as sent; converted only when asked for another syntax
            stored = body
            body = rendered.get(
                (url, entry.etag, media_type),
                lambda: serialize(parse(stored, stored_type, url), media_type, base=url),
            )
    else:
        assert entry.content_type is not None  # None only for a container
        media_type = entry.content_type
    headers["Content-Length"] = str(len(body))
    return Response(
        body if request.method == "GET" else b"", headers=headers, media_type=media_type
    )


def negotiate(accept: str | None, stored: str) -> str:
    """The media type to send an RDF source as: the best of OFFERED by the Accept header's
    q-values (RFC 9110 §12.5.1), the stored one on a tie; 406 when none is acceptable."""
    if not accept or not accept.strip():
        return stored
    best, best_q = None, 0.0
    for candidate in sorted(OFFERED, key=lambda t: t != stored):  # the stored type first
        q = _quality(accept, candidate)
        if q > best_q:
            best, best_q = candidate, q
    if best is None:
        raise Problem(
            406,
            "not acceptable",
            f"this is an RDF source: ask for {' or '.join(OFFERED)} (Accept said {accept!r})",
        )
    return best


def _quality(accept: str, media_type: str) -> float:
    kind = media_type.split("/")[0]
    found: tuple[int, float] | None = None  # (how specific the match is, q)
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        pattern, q = parts[0].lower(), 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        specificity = (
            2
            if pattern == media_type
            else 1
            if pattern == f"{kind}/*"
            else 0
            if pattern == "*/*"
            else -1
        )
        if specificity >= 0 and (found is None or specificity > found[0]):
            found = (specificity, q)
    return 0.0 if found is None else found[1]


# --- headers ------------------------------------------------------------------------------------


def resource_headers(
    path: str, entry: Entry | None, access: PodAccess, base: str
) -> dict[str, str]:
    container = path.endswith("/")
    types = [f"{LDP}Resource"]
    if container:
        types += [f"{LDP}BasicContainer", f"{LDP}Container", f"{LDP}RDFSource"]
    elif entry is not None:
        types.append(f"{LDP}RDFSource" if entry.is_rdf else f"{LDP}NonRDFSource")
    if path == POD_ROOT:
        types.append(
            str(PIM.Storage)
        )  # Solid Protocol, "Storage": the root container is the storage
    links = [f'<{t}>; rel="type"' for t in types]
    # WAC §5: the access-control document of this resource (this node writes it from the grants).
    links.append(f'<{url_of(base, ACL_PREFIX + path)}>; rel="acl"')
    # Solid Protocol, "Storage": every resource of a storage links to its storage description.
    links.append(f'<{base}{STORAGE_DESCRIPTION_PATH}>; rel="{SOLID.storageDescription}"')
    if path == POD_ROOT:
        links.append(f'<{webid(base)}>; rel="{SOLID.owner}"')
    headers = {
        "Link": ", ".join(links),
        "Allow": allowed_methods(path),
        "Accept-Put": ACCEPTED,
        "WAC-Allow": access.header(),
        "Vary": "Accept, Signature",
    }
    if container:
        headers["Accept-Post"] = ACCEPTED
    elif entry is None or entry.is_rdf:
        headers["Accept-Patch"] = N3  # Solid Protocol, "N3 Patch": an RDF document takes N3 Patch
    if entry is not None:
        headers["ETag"] = entry.etag
        if entry.modified:
            headers["Last-Modified"] = email.utils.formatdate(entry.modified, usegmt=True)
    return headers


def allowed_methods(path: str) -> str:
    if path == POD_ROOT:
        return "GET, HEAD, OPTIONS, POST, PUT"  # the storage's root is never deleted
    return (
        "GET, HEAD, OPTIONS, POST, PUT, DELETE"
        if path.endswith("/")
        else "GET, HEAD, OPTIONS, PUT, PATCH, DELETE"
    )


def etags(value: str | None) -> list[str] | None:
    """An If-Match / If-None-Match list: entity tags as sent, or ['*']; None when absent."""
    if value is None:
        return None
    return [tag.strip().removeprefix("W/") for tag in value.split(",") if tag.strip()]


def type_to_store(request: Request, media_type: str | None) -> str | None:
    """What a resource's Content-Type is kept as: RDF by its media type (it is re-serialised
    on the way out), anything else as sent, parameters and all (a charset must survive)."""
    if media_type is None or media_type in RDF_TYPES:
        return media_type
    return request.headers["content-type"].strip()


def media_type_of(value: str | None) -> str | None:
    return value.split(";")[0].strip().lower() or None if value else None


# --- paths --------------------------------------------------------------------------------------


def decoded_path(request: Request, prefix: str = "") -> str:
    """The pod path the client sent: each segment percent-decoded from the raw path (as the
    signature covered it), UTF-8; an encoded '/' inside a segment is refused rather than guessed."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    try:
        segments = raw.decode("ascii").split("?")[0].removeprefix(prefix).split("/")
    except UnicodeDecodeError:
        raise Problem(
            400,
            "bad path",
            "a path is ASCII on the wire: percent-encode other characters (RFC 3986)",
        ) from None
    decoded = []
    for segment in segments:
        try:
            text = urllib.parse.unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise Problem(
                400, "bad path", f"the segment {segment!r} does not decode to UTF-8"
            ) from None
        if any(c in text for c in _RESERVED_IN_SEGMENT):
            raise Problem(400, "bad path", f"the segment {segment!r} holds an encoded '/'")
        decoded.append(text)
    path = "/".join(decoded)
    try:
        return check_path(path)
    except InvalidPath as e:
        raise Problem(400, "bad path", str(e)) from None


def url_of(base: str, path: str) -> str:
    return base + urllib.parse.quote(path, safe="/-._~!$&'()*+,;=:@")
