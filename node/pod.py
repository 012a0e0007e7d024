"""The pod over HTTP: a Solid-protocol subset under /pod/, and the owner's WebID profile.

- LDP basic containers and resources: GET, HEAD, OPTIONS, PUT, POST (Slug), PATCH (N3 Patch,
  on RDF resources), DELETE. A path ending in '/' is a container; PUT and PATCH make the
  containers above a resource; a container is deleted only when empty (409 otherwise), the
  root never (405). Storage is store.pod_store (sealed in the vault).
- The root container is the Solid storage (pim:Storage), described at /.well-known/solid.
- CORS for Solid apps in a browser, on the pod's routes only (PodCORS).
- RDF sources (Turtle, JSON-LD) are negotiated by Accept through rdflib; other resources
  are served as they were stored.
- Every request is RFC 9421-signed like the rest of the API (401 otherwise), and the caller's
  DID gets what its grant's WAC-style modes allow on the path (agent.grants.pod_access); the
  owner may do everything. A container the owner made publicly readable is readable without
  a signature, as Solid clients expect of a profile or a bookmarks list.
- /profile/card is the owner's WebID profile (identity.webid), public, Turtle or JSON-LD.

A write is stored and answered at once. Indexing an RDF resource's text for search embeds
it, which must run on the model queue (the embedding model is not safe across threads): the
pod's indexer (store.pod_index) does it in the queue's background lane, a small batch per
job, within a budget per resource, so no writer can make a question wait. Peers' writes are
counted against their grant's pod quotas (writes per hour, bytes per day): 429 + Retry-After.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from rdflib import Graph
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.grants import POD_MODES, InvalidGrant, PodAccess, QuotaExceeded, pod_modes
from agent.queue import ModelQueue
from identity.did_key import InvalidDID
from identity.webid import PROFILE_PATH, webid, webid_profile
from node.node import Node
from node.nostr_peers import is_nostr_http_auth
from node.owner import LocalOwner, OwnerError
from store.pod_store import (
    MAX_RESOURCE_BYTES,
    POD_ROOT,
    Conflict,
    Entry,
    InvalidBody,
    InvalidPath,
    NotFound,
    PodError,
    PreconditionFailed,
    TooComplex,
    TooLarge,
    Unprocessable,
    check_path,
    parent_of,
)
from store.rdf import (
    JSON_LD,
    N3,
    PIM,
    RDF_TYPES,
    SOLID,
    TURTLE,
    InvalidPatch,
    RDFSyntaxError,
    acl_graph,
    container_graph,
    parse,
    parse_n3_patch,
    serialize,
    storage_description,
)

LDP = "http://www.w3.org/ns/ldp#"
ACL_PREFIX = "/acl"                  # /acl/pod/contacts/ is the WAC document of /pod/contacts/
OFFERED = [TURTLE, JSON_LD]          # what an RDF source can be read as
ACCEPTED = f"{TURTLE}, {JSON_LD}, */*"
STORAGE_DESCRIPTION_PATH = "/.well-known/solid"
_STATUS = {InvalidPath: 400, InvalidBody: 400, NotFound: 404, Conflict: 409, PreconditionFailed: 412, TooLarge: 413, Unprocessable: 422,
           TooComplex: 422}
_TITLES = {400: "bad request", 404: "not found", 409: "conflict", 412: "precondition failed", 413: "too large", 422: "unprocessable patch"}
# Percent-decoding a segment to one of these would change what the path means.
_RESERVED_IN_SEGMENT = ("/",)


def mount_pod(
    app: FastAPI,
    node: Node,
    *,
    signed_caller: Callable,
    owner_only: Callable[[str], None],
    model_queue: ModelQueue,
    nostr_pubkey: Callable[[], str | None] = lambda: None,
) -> None:
    """Add /pod/…, /profile/card and the owner's /api/owner/pod routes to ``app``; the pod's
    indexing runs in ``model_queue``'s background lane from now on."""

    rendered = _Rendered()
    app.add_middleware(PodCORS)

    def in_background(call: Callable[[], object]) -> object:
        """``call`` as a background job on the model queue; what it returned (or raised)."""
        result: list = []
        job = model_queue.submit(lambda: (result.append(call()), iter(()))[1], background=True)
        for _ in job:  # re-raises what the call raised, or JobCancelled when the node stops
            pass
        return result[0]

    node.pod_indexer.run_model_work_with(in_background)

    def problem(error: PodError) -> Exception:
        status = next((s for kind, s in _STATUS.items() if isinstance(error, kind)), 400)
        title = "too complex" if isinstance(error, TooComplex) else _TITLES[status]
        return _problem(status, title, str(error))

    async def caller_or_none(request: Request) -> str | None:
        """The signed caller's DID; None when the request carries no signature at all (public
        access only). A signature that is there but wrong is 401, never a silent downgrade."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_RESOURCE_BYTES:  # before the body is read
            raise _problem(413, "too large", f"a pod resource holds at most {MAX_RESOURCE_BYTES} bytes")
        signed = "signature" in request.headers or "signature-input" in request.headers
        if not signed and not is_nostr_http_auth(request.headers):  # NIP-98 signs too, as on the rest of the API
            return None
        return await signed_caller(request)

    def refuse(caller: str | None, access: PodAccess, path: str, mode: str) -> None:
        if access.allows(mode):
            return
        if caller is None:
            raise _problem(401, "signature required", f"{path} is not public: sign the request (RFC 9421) with a DID that holds a grant")
        raise _problem(403, "not granted", f"{caller} may not {mode} {path}; its pod access here is: {' '.join(sorted(access.user)) or 'none'}")

    async def count_write(caller: str | None, size: int) -> None:
        """Count a peer's write against its grant's pod quotas: 429 + Retry-After when spent."""
        try:
            await asyncio.to_thread(node.grants.use_pod_write, caller, size, owner_did=node.keys.owner_did)
        except QuotaExceeded as e:
            raise _problem(429, "quota exceeded", str(e), headers={"Retry-After": str(math.ceil(e.retry_after))}) from None

    # --- the pod -------------------------------------------------------------------------

    @app.api_route("/pod/{rest:path}", methods=["GET", "HEAD", "OPTIONS", "PUT", "POST", "DELETE", "PATCH"])
    async def pod(request: Request, caller: str | None = Depends(caller_or_none)) -> Response:
        path = _decoded_path(request)
        base = str(request.base_url).rstrip("/")
        method = request.method
        if caller is None and method not in ("GET", "HEAD", "OPTIONS"):
            # Only reading can be public: refused before an unsigned body is read at all.
            raise _problem(401, "signature required", "a change to the pod must be signed (RFC 9421) by a DID that holds a grant")
        try:
            if method in ("GET", "HEAD"):
                # Access and the read in one trip off the event loop: both are small sealed
                # reads, and a second thread hop cost more than they do (bench/bench_pod.py).
                def read() -> Response:
                    access = node.grants.pod_access(caller, path, owner_did=node.keys.owner_did)
                    refuse(caller, access, path, "read")
                    return _read(node, request, path, access, base, rendered)

                return await asyncio.to_thread(read)
            access = await asyncio.to_thread(node.grants.pod_access, caller, path, owner_did=node.keys.owner_did)
            if method == "OPTIONS":
                return Response(status_code=204, headers=_headers(path, None, access, base))
            if method == "PATCH":
                return await _patch(request, caller, path, access, base)
            if method == "PUT":
                return await _put(request, caller, path, access, base)
            if method == "POST":
                return await _post(request, caller, path, access, base)
            return await _delete(request, caller, path, access, base)
        except PodError as e:
            raise problem(e) from None

    async def _put(request: Request, caller: str | None, path: str, access: PodAccess, base: str) -> Response:
        content_type = _media_type(request.headers.get("content-type"))
        body = await request.body()
        if content_type is None and not (path.endswith("/") and not body):
            raise _problem(400, "content type required", "a PUT says what it sends: Content-Type: text/turtle, application/ld+json, …")
        missing = await asyncio.to_thread(node.pod.missing, path)
        await _check_write(caller, path, access, missing)
        if_match, if_none_match = _etags(request.headers.get("if-match")), _etags(request.headers.get("if-none-match"))
        if path.endswith("/"):
            if body:
                raise _problem(400, "bad request", "a container is created with an empty body; its members are what it holds")
            await count_write(caller, 0)
            entry, created = await asyncio.to_thread(node.pod.make_container, path, if_none_match=if_none_match)
        else:
            await count_write(caller, len(body))
            stored_type = _stored_type(request, content_type)
            put = lambda: node.pod.put(path, body, stored_type, base=_url(base, path), if_match=if_match, if_none_match=if_none_match)
            entry, created = await asyncio.to_thread(put)
        headers = {"ETag": entry.etag, "Location": _url(base, path), "WAC-Allow": access.header()}
        return Response(status_code=201 if created else 204, headers=headers)

    async def _post(request: Request, caller: str | None, path: str, access: PodAccess, base: str) -> Response:
        if not path.endswith("/"):
            raise _problem(405, "method not allowed", "POST goes to a container (a path ending with '/')", headers={"Allow": _allow(path)})
        as_container = f"<{LDP}BasicContainer>" in request.headers.get("link", "") or f"<{LDP}Container>" in request.headers.get("link", "")
        content_type = _media_type(request.headers.get("content-type"))
        body = await request.body()
        if as_container and body:
            raise _problem(400, "bad request", "a container is created with an empty body; its members are what it holds")
        if content_type is None and not as_container:
            raise _problem(400, "content type required", "a POST says what it sends: Content-Type: text/turtle, application/ld+json, …")
        refuse(caller, access, path, "append")  # before looking: a stranger learns nothing of what exists
        if await asyncio.to_thread(node.pod.get, path) is None:
            raise _problem(404, "not found", f"no container at {path}")
        slug = urllib.parse.unquote(request.headers.get("slug", ""))
        await count_write(caller, len(body))

        def post() -> Entry:
            return node.pod.post(path, slug, body, _stored_type(request, content_type), base_of=lambda p: _url(base, p), as_container=as_container)

        entry = await asyncio.to_thread(post)
        return Response(status_code=201, headers={"Location": _url(base, entry.path), "ETag": entry.etag, "WAC-Allow": access.header()})

    async def _patch(request: Request, caller: str | None, path: str, access: PodAccess, base: str) -> Response:
        """An N3 Patch (Solid Protocol, "N3 Patch"). Rights follow what it does: its conditions
        read, its insertions append, its deletions read and write; creating the resource also
        appends to the containers that gain it, as a PUT would."""
        if path.endswith("/"):
            raise _problem(405, "method not allowed", "a container's listing is made from its members; PATCH a resource", headers={"Allow": _allow(path)})
        if _media_type(request.headers.get("content-type")) != N3:
            # RFC 5789 §2.2: an unsupported patch format is 415, with what is supported.
            raise _problem(415, "unsupported patch", f"send an N3 Patch: Content-Type: {N3}", headers={"Accept-Patch": N3})
        body = await request.body()
        if len(body) > MAX_RESOURCE_BYTES:  # a chunked body has no Content-Length to check first
            raise _problem(413, "too large", f"a patch holds at most {MAX_RESOURCE_BYTES} bytes")
        try:
            patch = await asyncio.to_thread(parse_n3_patch, body, _url(base, path))
        except RDFSyntaxError as e:
            raise _problem(400, "bad request", f"the body is not valid {N3}: {e}") from None
        except InvalidPatch as e:
            raise _problem(422, "unprocessable patch", str(e)) from None
        modes = {"read"} if patch.conditions or patch.deletions else set()
        modes |= {"write"} if patch.deletions else {"append"}
        for mode in sorted(modes):
            refuse(caller, access, path, mode)
        missing = await asyncio.to_thread(node.pod.missing, path)
        if missing:
            await _check_write(caller, path, access, missing)
        if_match = _etags(request.headers.get("if-match"))
        await count_write(caller, len(body))
        entry, created = await asyncio.to_thread(node.pod.patch, path, patch, base=_url(base, path), if_match=if_match)
        headers = {"ETag": entry.etag, "WAC-Allow": access.header()}
        if created:
            headers["Location"] = _url(base, path)
        return Response(status_code=201 if created else 204, headers=headers)

    async def _delete(request: Request, caller: str | None, path: str, access: PodAccess, base: str) -> Response:
        if path == POD_ROOT:
            # Solid Protocol, "Deleting Resources": the storage's root container is never deleted.
            raise _problem(405, "method not allowed", "the pod's root container cannot be deleted", headers={"Allow": _allow(path)})
        refuse(caller, access, path, "write")
        parent = await asyncio.to_thread(node.grants.pod_access, caller, parent_of(path), owner_did=node.keys.owner_did)
        refuse(caller, parent, parent_of(path), "write")  # WAC: a member leaves its container by a write to it
        await count_write(caller, 0)
        await asyncio.to_thread(node.pod.delete, path, if_match=_etags(request.headers.get("if-match")))
        return Response(status_code=204)

    async def _check_write(caller: str | None, path: str, access: PodAccess, missing: list[str]) -> None:
        """Replacing needs write on the resource; creating needs append on each container
        that gains a member (write includes append), the containers created on the way too."""
        if not missing:
            refuse(caller, access, path, "write")
            return
        for created in missing:
            container = parent_of(created)
            modes = await asyncio.to_thread(node.grants.pod_access, caller, container, owner_did=node.keys.owner_did)
            refuse(caller, modes, container, "append")

    # --- access-control documents (WAC), written from the grants ------------------------------

    @app.api_route(ACL_PREFIX + "/pod/{rest:path}", methods=["GET", "HEAD", "OPTIONS", "PUT", "POST", "DELETE", "PATCH"])
    async def acl(request: Request, caller: str | None = Depends(caller_or_none)) -> Response:
        """The WAC document of a pod path, read-only: who may do what there now. Readable by
        the owner and by DIDs with control there; changed through grants (`flurry pod grant`)."""
        path = _decoded_path(request, prefix=ACL_PREFIX)
        base = str(request.base_url).rstrip("/")
        headers = {"Allow": "GET, HEAD, OPTIONS", "Vary": "Accept, Signature", "Link": f'<{LDP}RDFSource>; rel="type"'}
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers)
        if request.method not in ("GET", "HEAD"):
            raise _problem(405, "method not allowed", "access is changed through grants: flurry pod grant WHO CONTAINER MODES", headers=headers)
        access = await asyncio.to_thread(node.grants.pod_access, caller, path, owner_did=node.keys.owner_did)
        refuse(caller, access, path, "control")
        rules: list[tuple[str | None, frozenset[str]]] = [(node.keys.owner_did, frozenset(POD_MODES))]
        if access.public:
            rules.append((None, access.public))
        for grant in await asyncio.to_thread(node.grants.list):
            modes = pod_modes(grant.pod, path)
            if modes:
                rules.append((grant.did, modes))
        media_type = _negotiate(request.headers.get("accept"), TURTLE)
        url = _url(base, ACL_PREFIX + path)
        body = serialize(acl_graph(url, _url(base, path), rules, container=path.endswith("/")), media_type, base=url)
        headers["Content-Length"] = str(len(body))
        return Response(body if request.method == "GET" else b"", media_type=media_type, headers=headers)

    # --- public RDF documents ---------------------------------------------------------------

    def public_document(request: Request, path: str, graph_at: Callable[[str], Graph]) -> Response:
        """A public RDF document (the WebID profile, the storage description), in the format asked for."""
        base = str(request.base_url).rstrip("/")
        headers = {"Allow": "GET, HEAD, OPTIONS", "Vary": "Accept", "Link": f'<{LDP}RDFSource>; rel="type", <{LDP}Resource>; rel="type"'}
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers)
        media_type = _negotiate(request.headers.get("accept"), TURTLE)
        body = serialize(graph_at(base), media_type, base=base + path)
        headers["Content-Length"] = str(len(body))  # HEAD says what GET would send
        return Response(body if request.method == "GET" else b"", media_type=media_type, headers=headers)

    # --- the WebID profile ------------------------------------------------------------------

    @app.api_route(PROFILE_PATH, methods=["GET", "HEAD", "OPTIONS"])
    def profile(request: Request) -> Response:
        return public_document(request, PROFILE_PATH, lambda base: webid_profile(
            base, node.keys.owner_did, agent_card_url=f"{base}/.well-known/agent-card.json", nostr_pubkey=nostr_pubkey()))

    # --- the storage description (Solid Protocol, "Storage"), public -------------------------

    @app.api_route(STORAGE_DESCRIPTION_PATH, methods=["GET", "HEAD", "OPTIONS"])
    def description(request: Request) -> Response:
        return public_document(request, STORAGE_DESCRIPTION_PATH,
                               lambda base: storage_description(_url(base, POD_ROOT), owner=str(webid(base))))

    # --- the owner's management of pod access (for `flurry pod` while a server holds the home)

    async def owner_json(request: Request, caller: str = Depends(signed_caller)) -> dict:
        owner_only(caller)
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            raise _problem(400, "bad request", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise _problem(400, "bad request", "the body must be a JSON object")
        return body

    owner = LocalOwner(node)

    async def owner_call(call, *args):
        try:
            return await asyncio.to_thread(call, *args)
        except (OwnerError, InvalidGrant, InvalidDID, PodError) as e:
            raise _problem(400, "refused", str(e)) from None
        except (KeyError, TypeError) as e:
            raise _problem(400, "bad request", f"missing or malformed field: {e}") from None

    @app.get("/api/owner/pod/access")
    async def owner_pod_access(body: dict = Depends(owner_json)) -> dict:
        return await owner_call(owner.pod_access)

    @app.put("/api/owner/pod/access")
    async def owner_set_pod_access(body: dict = Depends(owner_json)) -> dict:
        await owner_call(owner.set_pod_access, body["who"], body["container"], body.get("modes"))
        return {"ok": True}

    @app.post("/api/owner/pod/list")
    async def owner_pod_list(body: dict = Depends(owner_json)) -> list:
        return await owner_call(owner.pod_list, body["path"])


# --- CORS (Solid Protocol, "Cross-Origin Resource Sharing") --------------------------------------------

CORS_PATHS = ("/pod/", ACL_PREFIX + "/pod/", PROFILE_PATH, STORAGE_DESCRIPTION_PATH)
# Every header these routes send, so that a Solid app in a browser can read them.
EXPOSED_HEADERS = [
    "Accept-Patch", "Accept-Post", "Accept-Put", "Allow", "Content-Length", "Content-Type", "ETag",
    "Last-Modified", "Link", "Location", "Retry-After", "Vary", "WAC-Allow", "WWW-Authenticate",
]


class _EmptyPreflightCORS(CORSMiddleware):
    """Starlette's CORS, but an accepted preflight is 204 with no body (Starlette sends 200
    "OK"; the Solid specification tests expect an empty preflight response)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 200:
            return response
        headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
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
            allow_headers=["*"],  # echoes what the preflight asks for (Accept, Signature, Slug, If-Match, …)
            expose_headers=EXPOSED_HEADERS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(CORS_PATHS):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _problem(status: int, title: str, detail: str, **options) -> Exception:
    """node.api's Problem (problem+json); imported here because node.api imports this module."""
    from node.api import Problem

    return Problem(status, title, detail, **options)


# --- reading ------------------------------------------------------------------------------------


class _Rendered:
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


def _read(node: Node, request: Request, path: str, access: PodAccess, base: str, rendered: _Rendered) -> Response:
    entry, body = node.pod.read(path)
    headers = _headers(path, entry, access, base)
    if entry.etag in (_etags(request.headers.get("if-none-match")) or ()):
        return Response(status_code=304, headers=headers)
    url = _url(base, path)
    if entry.is_container:
        media_type = _negotiate(request.headers.get("accept"), TURTLE)

        def listing() -> bytes:
            graph = container_graph(url, [_url(base, path + member) for member in entry.members], entry.modified)
            return serialize(graph, media_type, base=url)

        body = rendered.get((url, entry.etag, media_type), listing)
    elif entry.content_type in RDF_TYPES:
        media_type = _negotiate(request.headers.get("accept"), entry.content_type)
        if media_type != entry.content_type:  # kept as sent; converted only when asked for another syntax
            stored = body
            body = rendered.get((url, entry.etag, media_type), lambda: serialize(parse(stored, entry.content_type, url), media_type, base=url))
    else:
        media_type = entry.content_type
    headers["Content-Length"] = str(len(body))
    return Response(body if request.method == "GET" else b"", headers=headers, media_type=media_type)


def _negotiate(accept: str | None, stored: str) -> str:
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
        raise _problem(406, "not acceptable", f"this is an RDF source: ask for {' or '.join(OFFERED)} (Accept said {accept!r})")
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
        specificity = 2 if pattern == media_type else 1 if pattern == f"{kind}/*" else 0 if pattern == "*/*" else -1
        if specificity >= 0 and (found is None or specificity > found[0]):
            found = (specificity, q)
    return 0.0 if found is None else found[1]


# --- headers ------------------------------------------------------------------------------------


def _headers(path: str, entry: Entry | None, access: PodAccess, base: str) -> dict[str, str]:
    container = path.endswith("/")
    types = [f"{LDP}Resource"]
    if container:
        types += [f"{LDP}BasicContainer", f"{LDP}Container", f"{LDP}RDFSource"]
    elif entry is not None:
        types.append(f"{LDP}RDFSource" if entry.is_rdf else f"{LDP}NonRDFSource")
    if path == POD_ROOT:
        types.append(str(PIM.Storage))  # Solid Protocol, "Storage": the root container is the storage
    links = [f'<{t}>; rel="type"' for t in types]
    # WAC §5: the access-control document of this resource (this node writes it from the grants).
    links.append(f'<{_url(base, ACL_PREFIX + path)}>; rel="acl"')
    # Solid Protocol, "Storage": every resource of a storage links to its storage description.
    links.append(f'<{base}{STORAGE_DESCRIPTION_PATH}>; rel="{SOLID.storageDescription}"')
    if path == POD_ROOT:
        links.append(f'<{webid(base)}>; rel="{SOLID.owner}"')
    headers = {
        "Link": ", ".join(links),
        "Allow": _allow(path),
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


def _allow(path: str) -> str:
    if path == POD_ROOT:
        return "GET, HEAD, OPTIONS, POST, PUT"  # the storage's root is never deleted
    return "GET, HEAD, OPTIONS, POST, PUT, DELETE" if path.endswith("/") else "GET, HEAD, OPTIONS, PUT, PATCH, DELETE"


def _etags(value: str | None) -> list[str] | None:
    """An If-Match / If-None-Match list: entity tags as sent, or ['*']; None when absent."""
    if value is None:
        return None
    return [tag.strip().removeprefix("W/") for tag in value.split(",") if tag.strip()]


def _stored_type(request: Request, media_type: str | None) -> str | None:
    """What a resource's Content-Type is kept as: RDF by its media type (it is re-serialised
    on the way out), anything else as sent, parameters and all (a charset must survive)."""
    if media_type is None or media_type in RDF_TYPES:
        return media_type
    return request.headers["content-type"].strip()


def _media_type(value: str | None) -> str | None:
    return value.split(";")[0].strip().lower() or None if value else None


# --- paths --------------------------------------------------------------------------------------


def _decoded_path(request: Request, prefix: str = "") -> str:
    """The pod path the client sent: each segment percent-decoded from the raw path (as the
    signature covered it), UTF-8; an encoded '/' inside a segment is refused rather than guessed."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    try:
        segments = raw.decode("ascii").split("?")[0].removeprefix(prefix).split("/")
    except UnicodeDecodeError:
        raise _problem(400, "bad path", "a path is ASCII on the wire: percent-encode other characters (RFC 3986)") from None
    decoded = []
    for segment in segments:
        try:
            text = urllib.parse.unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise _problem(400, "bad path", f"the segment {segment!r} does not decode to UTF-8") from None
        if any(c in text for c in _RESERVED_IN_SEGMENT):
            raise _problem(400, "bad path", f"the segment {segment!r} holds an encoded '/'")
        decoded.append(text)
    path = "/".join(decoded)
    try:
        return check_path(path)
    except InvalidPath as e:
        raise _problem(400, "bad path", str(e)) from None


def _url(base: str, path: str) -> str:
    return base + urllib.parse.quote(path, safe="/-._~!$&'()*+,;=:@")
