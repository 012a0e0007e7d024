"""What a peer node publishes: its skill releases, found by walking its pod's public containers.

``list_published(base_url, http)`` reads ``/pod/public/skills/`` (one member per skill name),
then each ``NAME/`` (one member per version), with unsigned GETs: node.skill_publish makes that
container public. The release's manifest is then at ``NAME/VERSION/manifest.json`` by the fixed
layout, so the version containers are not listed (a version published half way, wheel without
manifest, answers 404 when the installer asks for its manifest).

Everything here comes from a stranger, so nothing is trusted, and every read is bounded:

- each listing is asked for as JSON-LD (the pod serves the same LDP listing, ``ldp:contains``,
  as Turtle or JSON-LD; JSON needs no RDF parser on a stranger's bytes) and read up to
  ``max_listing_bytes`` (Content-Length first, then as it streams);
- at most ``max_names`` names (in name order) and, of each, the ``max_versions`` newest;
- a member counts only if it is on the container's own origin and its path is the container's
  plus one segment that is a skill name
  (skills.manifest.NAME) or a version; anything else is ignored. The URLs returned are built from
  ``base_url`` and those checked segments, never taken from the listing, so a listing cannot
  point the reader at another host;
- redirects are not followed (httpx's default, and the caller's client should keep it).

A manifest URL is only where to look: the installer still checks the release (its signature,
its author, its wheel's hash: skills.release.parse_release, Release.check_wheel).
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple
from urllib.parse import quote, unquote, urlsplit

import httpx
from packaging.version import InvalidVersion, Version

from node.errors import NodeError
from skills.manifest import NAME
from skills.release import MANIFEST_FILE

SKILLS_CONTAINER = "/pod/public/skills/"  # node.skill_publish writes here (the fixed layout)
JSON_LD = "application/ld+json"
LDP_CONTAINS = "http://www.w3.org/ns/ldp#contains"
MAX_NAMES = 50
MAX_VERSIONS = 20
MAX_LISTING_BYTES = 64 * 1024
# skills.release's rule for a version, so that nothing listed here is refused there for its form.
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$")


class CatalogError(NodeError):
    """A peer's published releases could not be listed; the message says where and why."""


class Listed(NamedTuple):
    name: str
    version: str
    manifest_url: str


def list_published(
    base_url: str,
    http: httpx.Client,
    *,
    max_names: int = MAX_NAMES,
    max_versions: int = MAX_VERSIONS,
    max_listing_bytes: int = MAX_LISTING_BYTES,
) -> list[Listed]:
    """The releases the node at ``base_url`` publishes: (name, version, manifest URL), by name,
    newest version first. [] when it publishes none; CatalogError when a listing cannot be read."""
    base = base_url.rstrip("/")
    names = _members(http, base, SKILLS_CONTAINER, max_listing_bytes, NAME)
    found: list[Listed] = []
    for name in sorted(names)[:max_names]:
        folder = f"{SKILLS_CONTAINER}{name}/"
        versions = _members(http, base, folder, max_listing_bytes, _VERSION)
        for version in sorted(versions, key=_version_order, reverse=True)[:max_versions]:
            url = base + quote(f"{folder}{version}/{MANIFEST_FILE}")
            found.append(Listed(name, version, url))
    return found


def _members(
    http: httpx.Client, base: str, container: str, limit: int, pattern: re.Pattern[str]
) -> set[str]:
    """The names of ``container``'s sub-containers that match ``pattern`` (none when it is gone)."""
    body = _read(http, base + quote(container), limit)
    listed = unquote(urlsplit(base).path) + container  # its path as the listing names it
    if body is None:
        return set()
    try:
        graph = json.loads(body)
    except (ValueError, RecursionError):
        raise CatalogError(f"{base}{container}: the listing is not JSON") from None
    nodes = graph if isinstance(graph, list) else [graph]
    names: set[str] = set()
    for node in nodes:
        own = (
            urlsplit(node["@id"])
            if isinstance(node, dict) and isinstance(node.get("@id"), str)
            else None
        )
        if own is None or unquote(own.path) != listed:
            continue
        members = node.get(LDP_CONTAINS, [])
        for member in members if isinstance(members, list) else [members]:
            iri = member.get("@id") if isinstance(member, dict) else None
            if not isinstance(iri, str):
                continue
            where = urlsplit(iri)
            path = unquote(where.path)
            segment = path.removeprefix(listed)
            if (
                (where.scheme, where.netloc) == (own.scheme, own.netloc)  # not on another host
                and path.startswith(listed)
                and segment.endswith("/")
                and pattern.match(segment[:-1])
            ):
                names.add(segment[:-1])
    return names


def _read(http: httpx.Client, url: str, limit: int) -> bytes | None:
    """The body at ``url``, read up to ``limit`` bytes; None on 404."""
    try:
        with http.stream("GET", url, headers={"Accept": JSON_LD}) as response:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise CatalogError(f"{url}: the peer answered {response.status_code}")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise CatalogError(
                    f"{url}: the listing is {length} bytes; at most {limit} are read"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise CatalogError(
                        f"{url}: the listing is over {limit} bytes; not read further"
                    )
            return bytes(body)
    except httpx.HTTPError as e:
        raise CatalogError(f"{url}: {type(e).__name__}: {e}") from None


def _version_order(version: str) -> tuple[int, Version | str]:
    """PEP 440 versions in their order, after any other text (which sorts as text)."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def container_url(base_url: str, name: str) -> str:
    """The URL of skill ``name``'s container in the pod at ``base_url``."""
    return f"{base_url.rstrip('/')}{quote(f'{SKILLS_CONTAINER}{name}/')}"


def list_versions(
    container: str, http: httpx.Client, *, max_listing_bytes: int = MAX_LISTING_BYTES
) -> list[str]:
    """The versions listed in one skill's container (its URL), newest first, at most
    ``MAX_VERSIONS`` of them, read with the same bounds and rules as ``list_published``."""
    where = urlsplit(container)
    origin = f"{where.scheme}://{where.netloc}"
    versions = _members(http, origin, unquote(where.path), max_listing_bytes, _VERSION)
    return sorted(versions, key=_version_order, reverse=True)[:MAX_VERSIONS]


def is_version(text: str) -> bool:
    """Whether ``text`` has the form of a release version (skills.release's rule)."""
    return bool(_VERSION.match(text))
