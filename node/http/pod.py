"""The pod over HTTP: a Solid-protocol subset under /pod/, and the owner's WebID profile.

- LDP basic containers and resources: GET, HEAD, OPTIONS, PUT, POST (Slug), PATCH (N3 Patch,
  on RDF resources), DELETE. A path ending in '/' is a container; PUT and PATCH make the
  containers above a resource; a container is deleted only when empty (409 otherwise), the
  root never (405). Storage is store.pod_store (sealed in the vault); its errors answer by
  node.http.problems' table.
- The root container is the Solid storage (pim:Storage), described at /.well-known/solid.
- CORS for Solid apps in a browser, on the pod's routes only (node.http.solid.PodCORS).
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
job, within a budget per resource, so no writer can make a question wait (create_app hands
it node.http.jobs.in_background). Peers' writes are counted against their grant's pod
quotas (writes per hour, bytes per day): 429 + Retry-After.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from rdflib import Graph

from agent.grants import POD_MODES, PodAccess, pod_modes
from identity.webid import PROFILE_PATH, webid, webid_profile
from node.http.auth import signed_caller
from node.http.calls import BodyDep, owner_call
from node.http.problems import Problem
from node.http.solid import (
    ACL_PREFIX,
    LDP,
    STORAGE_DESCRIPTION_PATH,
    Renderings,
    allowed_methods,
    decoded_path,
    etags,
    media_type_of,
    negotiate,
    read_resource,
    resource_headers,
    type_to_store,
    url_of,
)
from node.http.state import NodeDep, OwnerDep
from node.node import Node
from node.nostr_peers import is_nostr_http_auth
from node.rotation import CHAIN_PATH
from store.pod_store import MAX_RESOURCE_BYTES, POD_ROOT, Entry, parent_of
from store.rdf import (
    N3,
    TURTLE,
    InvalidPatch,
    RDFSyntaxError,
    acl_graph,
    parse_n3_patch,
    serialize,
    storage_description,
)

router = APIRouter()  # the pod and its public documents: signed, or public where the owner said so
owner_router = (
    APIRouter()
)  # the owner's management of pod access (owner only, declared where it is included)


def get_renderings(request: Request) -> Renderings:
    return request.app.state.pod_renderings


RenderingsDep = Annotated[Renderings, Depends(get_renderings)]


async def caller_or_none(request: Request) -> str | None:
    """The signed caller's DID; None when the request carries no signature at all (public
    access only). A signature that is there but wrong is 401, never a silent downgrade."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_RESOURCE_BYTES:  # before the body is read
        raise Problem(413, "too large", f"a pod resource holds at most {MAX_RESOURCE_BYTES} bytes")
    signed = "signature" in request.headers or "signature-input" in request.headers
    if not signed and not is_nostr_http_auth(
        request.headers
    ):  # NIP-98 signs too, as on the rest of the API
        return None
    # Called, not declared: a signature is checked only when there is one. An override of
    # signed_caller (tests, benchmarks) holds here too.
    return await request.app.dependency_overrides.get(signed_caller, signed_caller)(request)


MaybeCallerDep = Annotated[str | None, Depends(caller_or_none)]


def refuse(caller: str | None, access: PodAccess, path: str, mode: str) -> None:
    if access.allows(mode):
        return
    if caller is None:
        raise Problem(
            401,
            "signature required",
            f"{path} is not public: sign the request (RFC 9421) with a DID that holds a grant",
        )
    raise Problem(
        403,
        "not granted",
        f"{caller} may not {mode} {path}; its pod access here is: {' '.join(sorted(access.user)) or 'none'}",
    )


async def count_write(node: Node, caller: str | None, size: int) -> None:
    """Count a peer's write against its grant's pod quotas: QuotaExceeded (429 + Retry-After) when spent."""
    await asyncio.to_thread(node.grants.use_pod_write, caller, size, owner_did=node.keys.owner_did)


# --- the pod -------------------------------------------------------------------------


@router.api_route(
    "/pod/{rest:path}", methods=["GET", "HEAD", "OPTIONS", "PUT", "POST", "DELETE", "PATCH"]
)
async def pod(
    request: Request, caller: MaybeCallerDep, node: NodeDep, rendered: RenderingsDep
) -> Response:
    path = decoded_path(request)
    base = str(request.base_url).rstrip("/")
    method = request.method
    if caller is None and method not in ("GET", "HEAD", "OPTIONS"):
        # Only reading can be public: refused before an unsigned body is read at all.
        raise Problem(
            401,
            "signature required",
            "a change to the pod must be signed (RFC 9421) by a DID that holds a grant",
        )
    if method in ("GET", "HEAD"):
        # Access and the read in one trip off the event loop: both are small sealed
        # reads, and a second thread hop cost more than they do (bench/bench_pod.py).
        def read() -> Response:
            access = node.grants.pod_access(caller, path, owner_did=node.keys.owner_did)
            refuse(caller, access, path, "read")
            return read_resource(node, request, path, access, base, rendered)

        return await asyncio.to_thread(read)
    access = await asyncio.to_thread(
        node.grants.pod_access, caller, path, owner_did=node.keys.owner_did
    )
    if method == "OPTIONS":
        return Response(status_code=204, headers=resource_headers(path, None, access, base))
    if method == "PATCH":
        return await _patch(node, request, caller, path, access, base)
    if method == "PUT":
        return await _put(node, request, caller, path, access, base)
    if method == "POST":
        return await _post(node, request, caller, path, access, base)
    return await _delete(node, request, caller, path, access, base)


async def _put(
    node: Node, request: Request, caller: str | None, path: str, access: PodAccess, base: str
) -> Response:
    content_type = media_type_of(request.headers.get("content-type"))
    body = await request.body()
    if content_type is None and not (path.endswith("/") and not body):
        raise Problem(
            400,
            "content type required",
            "a PUT says what it sends: Content-Type: text/turtle, application/ld+json, …",
        )
    missing = await asyncio.to_thread(node.pod.missing, path)
    await _check_write(node, caller, path, access, missing)
    if_match, if_none_match = (
        etags(request.headers.get("if-match")),
        etags(request.headers.get("if-none-match")),
    )
    if path.endswith("/"):
        if body:
            raise Problem(
                400,
                "bad request",
                "a container is created with an empty body; its members are what it holds",
            )
        await count_write(node, caller, 0)
        entry, created = await asyncio.to_thread(
            node.pod.make_container, path, if_none_match=if_none_match
        )
    else:
        await count_write(node, caller, len(body))
        stored_type = type_to_store(request, content_type)
        assert stored_type is not None  # a Content-Type was required above for all but a container
        entry, created = await asyncio.to_thread(
            node.pod.put,
            path,
            body,
            stored_type,
            base=url_of(base, path),
            if_match=if_match,
            if_none_match=if_none_match,
        )
    headers = {"ETag": entry.etag, "Location": url_of(base, path), "WAC-Allow": access.header()}
    return Response(status_code=201 if created else 204, headers=headers)


async def _post(
    node: Node, request: Request, caller: str | None, path: str, access: PodAccess, base: str
) -> Response:
    if not path.endswith("/"):
        raise Problem(
            405,
            "method not allowed",
            "POST goes to a container (a path ending with '/')",
            headers={"Allow": allowed_methods(path)},
        )
    as_container = f"<{LDP}BasicContainer>" in request.headers.get(
        "link", ""
    ) or f"<{LDP}Container>" in request.headers.get("link", "")
    content_type = media_type_of(request.headers.get("content-type"))
    body = await request.body()
    if as_container and body:
        raise Problem(
            400,
            "bad request",
            "a container is created with an empty body; its members are what it holds",
        )
    if content_type is None and not as_container:
        raise Problem(
            400,
            "content type required",
            "a POST says what it sends: Content-Type: text/turtle, application/ld+json, …",
        )
    refuse(
        caller, access, path, "append"
    )  # before looking: a stranger learns nothing of what exists
    if await asyncio.to_thread(node.pod.get, path) is None:
        raise Problem(404, "not found", f"no container at {path}")
    slug = urllib.parse.unquote(request.headers.get("slug", ""))
    await count_write(node, caller, len(body))

    def post() -> Entry:
        return node.pod.post(
            path,
            slug,
            body,
            type_to_store(request, content_type),
            base_of=lambda p: url_of(base, p),
            as_container=as_container,
        )

    entry = await asyncio.to_thread(post)
    return Response(
        status_code=201,
        headers={
            "Location": url_of(base, entry.path),
            "ETag": entry.etag,
            "WAC-Allow": access.header(),
        },
    )


async def _patch(
    node: Node, request: Request, caller: str | None, path: str, access: PodAccess, base: str
) -> Response:
    """An N3 Patch (Solid Protocol, "N3 Patch"). Rights follow what it does: its conditions
    read, its insertions append, its deletions read and write; creating the resource also
    appends to the containers that gain it, as a PUT would."""
    if path.endswith("/"):
        raise Problem(
            405,
            "method not allowed",
            "a container's listing is made from its members; PATCH a resource",
            headers={"Allow": allowed_methods(path)},
        )
    if media_type_of(request.headers.get("content-type")) != N3:
        # RFC 5789 §2.2: an unsupported patch format is 415, with what is supported.
        raise Problem(
            415,
            "unsupported patch",
            f"send an N3 Patch: Content-Type: {N3}",
            headers={"Accept-Patch": N3},
        )
    body = await request.body()
    if len(body) > MAX_RESOURCE_BYTES:  # a chunked body has no Content-Length to check first
        raise Problem(413, "too large", f"a patch holds at most {MAX_RESOURCE_BYTES} bytes")
    try:
        patch = await asyncio.to_thread(parse_n3_patch, body, url_of(base, path))
    except RDFSyntaxError as e:
        raise Problem(400, "bad request", f"the body is not valid {N3}: {e}") from None
    except InvalidPatch as e:
        raise Problem(422, "unprocessable patch", str(e)) from None
    modes = {"read"} if patch.conditions or patch.deletions else set()
    modes |= {"write"} if patch.deletions else {"append"}
    for mode in sorted(modes):
        refuse(caller, access, path, mode)
    missing = await asyncio.to_thread(node.pod.missing, path)
    if missing:
        await _check_write(node, caller, path, access, missing)
    if_match = etags(request.headers.get("if-match"))
    await count_write(node, caller, len(body))
    entry, created = await asyncio.to_thread(
        node.pod.patch, path, patch, base=url_of(base, path), if_match=if_match
    )
    headers = {"ETag": entry.etag, "WAC-Allow": access.header()}
    if created:
        headers["Location"] = url_of(base, path)
    return Response(status_code=201 if created else 204, headers=headers)


async def _delete(
    node: Node, request: Request, caller: str | None, path: str, access: PodAccess, base: str
) -> Response:
    if path == POD_ROOT:
        # Solid Protocol, "Deleting Resources": the storage's root container is never deleted.
        raise Problem(
            405,
            "method not allowed",
            "the pod's root container cannot be deleted",
            headers={"Allow": allowed_methods(path)},
        )
    refuse(caller, access, path, "write")
    parent = await asyncio.to_thread(
        node.grants.pod_access, caller, parent_of(path), owner_did=node.keys.owner_did
    )
    refuse(
        caller, parent, parent_of(path), "write"
    )  # WAC: a member leaves its container by a write to it
    await count_write(node, caller, 0)
    await asyncio.to_thread(node.pod.delete, path, if_match=etags(request.headers.get("if-match")))
    return Response(status_code=204)


async def _check_write(
    node: Node, caller: str | None, path: str, access: PodAccess, missing: list[str]
) -> None:
    """Replacing needs write on the resource; creating needs append on each container
    that gains a member (write includes append), the containers created on the way too."""
    if not missing:
        refuse(caller, access, path, "write")
        return
    for created in missing:
        container = parent_of(created)
        modes = await asyncio.to_thread(
            node.grants.pod_access, caller, container, owner_did=node.keys.owner_did
        )
        refuse(caller, modes, container, "append")


# --- access-control documents (WAC), written from the grants ------------------------------


@router.api_route(
    ACL_PREFIX + "/pod/{rest:path}",
    methods=["GET", "HEAD", "OPTIONS", "PUT", "POST", "DELETE", "PATCH"],
)
async def acl(request: Request, caller: MaybeCallerDep, node: NodeDep) -> Response:
    """The WAC document of a pod path, read-only: who may do what there now. Readable by
    the owner and by DIDs with control there; changed through grants (`flurry pod grant`)."""
    path = decoded_path(request, prefix=ACL_PREFIX)
    base = str(request.base_url).rstrip("/")
    headers = {
        "Allow": "GET, HEAD, OPTIONS",
        "Vary": "Accept, Signature",
        "Link": f'<{LDP}RDFSource>; rel="type"',
    }
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=headers)
    if request.method not in ("GET", "HEAD"):
        raise Problem(
            405,
            "method not allowed",
            "access is changed through grants: flurry pod grant WHO CONTAINER MODES",
            headers=headers,
        )
    access = await asyncio.to_thread(
        node.grants.pod_access, caller, path, owner_did=node.keys.owner_did
    )
    refuse(caller, access, path, "control")
    rules: list[tuple[str | None, frozenset[str]]] = [(node.keys.owner_did, frozenset(POD_MODES))]
    if access.public:
        rules.append((None, access.public))
    for grant in await asyncio.to_thread(node.grants.list):
        modes = pod_modes(grant.pod, path)
        if modes:
            rules.append((grant.did, modes))
    media_type = negotiate(request.headers.get("accept"), TURTLE)
    url = url_of(base, ACL_PREFIX + path)
    body = serialize(
        acl_graph(url, url_of(base, path), rules, container=path.endswith("/")),
        media_type,
        base=url,
    )
    headers["Content-Length"] = str(len(body))
    return Response(
        body if request.method == "GET" else b"", media_type=media_type, headers=headers
    )


# --- public RDF documents ---------------------------------------------------------------


def public_document(request: Request, path: str, graph_at: Callable[[str], Graph]) -> Response:
    """A public RDF document (the WebID profile, the storage description), in the format asked for."""
    base = str(request.base_url).rstrip("/")
    headers = {
        "Allow": "GET, HEAD, OPTIONS",
        "Vary": "Accept",
        "Link": f'<{LDP}RDFSource>; rel="type", <{LDP}Resource>; rel="type"',
    }
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=headers)
    media_type = negotiate(request.headers.get("accept"), TURTLE)
    body = serialize(graph_at(base), media_type, base=base + path)
    headers["Content-Length"] = str(len(body))  # HEAD says what GET would send
    return Response(
        body if request.method == "GET" else b"", media_type=media_type, headers=headers
    )


# --- the WebID profile ------------------------------------------------------------------


@router.api_route(PROFILE_PATH, methods=["GET", "HEAD", "OPTIONS"])
def profile(request: Request, node: NodeDep) -> Response:
    return public_document(
        request,
        PROFILE_PATH,
        lambda base: webid_profile(
            base,
            node.keys.owner_did,
            agent_card_url=f"{base}/.well-known/agent-card.json",
            nostr_pubkey=node.keys.nostr_public_key_hex,
            previous_dids=[s["previous"]["owner"] for s in node.keys.rotations],
            rotations_url=f"{base}{CHAIN_PATH}" if node.keys.rotations else None,
        ),
    )


# --- the storage description (Solid Protocol, "Storage"), public -------------------------


@router.api_route(STORAGE_DESCRIPTION_PATH, methods=["GET", "HEAD", "OPTIONS"])
def description(request: Request) -> Response:
    return public_document(
        request,
        STORAGE_DESCRIPTION_PATH,
        lambda base: storage_description(url_of(base, POD_ROOT), owner=str(webid(base))),
    )


# --- the owner's management of pod access (for `flurry pod` while a server holds the home)


@owner_router.get("/api/owner/pod/access")
async def owner_pod_access(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.pod_access)


@owner_router.put("/api/owner/pod/access")
async def owner_set_pod_access(body: BodyDep, owner: OwnerDep) -> dict:
    await owner_call(
        lambda: owner.set_pod_access(body["who"], body["container"], body.get("modes"))
    )
    return {"ok": True}


@owner_router.post("/api/owner/pod/list")
async def owner_pod_list(body: BodyDep, owner: OwnerDep) -> list:
    return await owner_call(lambda: owner.pod_list(body["path"]))
