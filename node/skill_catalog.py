"""Finding shared skills: what pinned peers publish in their pods, read over plain HTTP, and
what their Nostr keys announce on the owner's relays (node.skill_announcements).

A node publishes a skill release (skills.release) in its pod's public container::

    /pod/public/skills/NAME/VERSION/manifest.json     the signed release manifest
    /pod/public/skills/NAME/VERSION/<wheel filename>  the wheel it names

Containers list their members the LDP way (Turtle, ``ldp:contains``), so a reader walks
``skills/`` → ``NAME/`` → ``VERSION/``. Everything read here comes from another machine: each
download has a size limit checked before and while reading, a timeout, and no redirect is
followed (a release is read only from where it was named); a listing is cut at a number of
members; a member whose name is not a skill name or a version is skipped. A release is shown
only when its author's signature holds and the folder it was read from names the very name and
version it signs (a release copied under another version's folder is a replay); the others are
reported as refused, with why. An announcement only points at a manifest: it is read and
checked the same way, and its bytes must have the sha256 the announcement states.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import httpx
from packaging.version import InvalidVersion, Version
from rdflib import URIRef
from rdflib.namespace import Namespace

from node.nostr_peers import peer_key_for
from node.nostr_wire import list_relays
from node.peers import Peer, list_peers
from node.skill_announcements import QUERY_SECONDS, fetch_announcements
from skills.manifest import NAME
from skills.release import MANIFEST_FILE, MAX_MANIFEST_BYTES, Release, ReleaseRefused, parse_release
from store.rdf import TURTLE, RDFSyntaxError, parse
from store.vault import Vault

SKILLS_CONTAINER = "/pod/public/skills/"
MAX_LISTING_BYTES = 64 * 1024  # a container's Turtle listing
MAX_SKILLS_LISTED = 100  # names read from one peer's skills container
MAX_VERSIONS_LISTED = 64  # versions read from one skill's container (the newest are checked)
VERSIONS_SHOWN = 3  # releases of one skill checked and shown by search, newest first
FETCH_TIMEOUT = 10.0
MANIFEST_TYPES = ("application/json",)
TURTLE_TYPES = ("text/turtle",)
_LDP = Namespace("http://www.w3.org/ns/ldp#")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$")  # skills.release's


@dataclass(frozen=True)
class Offer:
    """One release someone offers, whose signature held."""

    name: str
    version: str
    description: str
    author_did: str
    author_pinned: str | None  # the pinned peer's name (or DID) when the author is one
    permissions: tuple[str, ...]
    cosigners: tuple[str, ...]
    pinned_cosigners: tuple[str, ...]  # the co-signers that are pinned peers
    manifest_url: str
    manifest_sha256: str
    found_at: str  # "peer:NAME" or "nostr:RELAY"

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Catalog:
    offers: list[Offer] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)  # {url, found_at, reason}

    def to_json(self) -> dict:
        return {"offers": [o.to_json() for o in self.offers], "refused": self.refused}


# --- downloads ---------------------------------------------------------------------------------


def client() -> httpx.Client:
    """The HTTP client for other nodes' pods: no redirects, a timeout, no proxies from the
    environment (a pinned peer's URL is where the owner said)."""
    return httpx.Client(follow_redirects=False, timeout=FETCH_TIMEOUT, trust_env=False)


def check_url(url: str, *, loopback_http: bool = True) -> str:
    """``url`` if it is an https URL (or http to this machine, for tests and local nodes)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and loopback_http and _loopback(parts.hostname):
        return url
    raise ReleaseRefused(f"{url!r}: a release is fetched over https (http only from this machine)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch(http: httpx.Client, url: str, limit: int, types: tuple[str, ...] = ()) -> bytes:
    """The body at ``url``: at most ``limit`` bytes (the announced length is checked before
    reading, the bytes while reading), of one of ``types`` when given; ReleaseRefused otherwise."""
    try:
        with http.stream("GET", url, headers={"Accept": ", ".join(types) or "*/*"}) as response:
            if response.is_redirect:
                raise ReleaseRefused(
                    f"{url} redirects to {response.headers.get('location', '?')!r}; "
                    "a release is read only from where it was named"
                )
            if response.status_code != 200:
                raise ReleaseRefused(f"{url}: HTTP {response.status_code}")
            media = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if types and media not in types:
                raise ReleaseRefused(f"{url} is {media or 'untyped'}, not {' or '.join(types)}")
            announced = response.headers.get("content-length")
            if announced is not None and (not announced.isdigit() or int(announced) > limit):
                raise ReleaseRefused(f"{url} is {announced} bytes; at most {limit} are read")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise ReleaseRefused(f"{url} sent more than {limit} bytes; refused")
            return bytes(body)
    except httpx.HTTPError as e:
        raise ReleaseRefused(f"{url}: the download failed ({type(e).__name__}: {e})") from None


def list_container(http: httpx.Client, url: str, pattern: re.Pattern[str], most: int) -> list[str]:
    """The names of ``url``'s member containers that match ``pattern`` (at most ``most``)."""
    body = fetch(http, url, MAX_LISTING_BYTES, TURTLE_TYPES)
    try:
        graph = parse(body, TURTLE, url)
    except RDFSyntaxError as e:
        raise ReleaseRefused(f"{url}: the listing is not Turtle ({e})") from None
    names = []
    for member in graph.objects(URIRef(url), _LDP.contains):
        rest = str(member)[len(url) :] if str(member).startswith(url) else ""
        name = urllib.parse.unquote(rest.removesuffix("/"))
        if rest.endswith("/") and "/" not in name and pattern.match(name):
            names.append(name)
    return sorted(set(names))[:most]


def newest_first(versions: Iterable[str]) -> list[str]:
    """Versions that PEP 440 can order, newest first; the others are left out."""
    ordered = []
    for v in versions:
        try:
            ordered.append((Version(v), v))
        except InvalidVersion:
            continue
    return [v for _, v in sorted(ordered, reverse=True)]


def is_newer(version: str, than: str) -> bool:
    try:
        return Version(version) > Version(than)
    except InvalidVersion:
        return False


def container_url(base: str, name: str) -> str:
    """The URL of skill ``name``'s container in the pod at ``base``."""
    return f"{base.rstrip('/')}{SKILLS_CONTAINER}{name}/"


def read_release(http: httpx.Client, manifest_url: str) -> tuple[Release, str]:
    """The release at ``manifest_url`` and the sha256 of its bytes, if its author signed it and
    the URL's folders name its name and version (…/NAME/VERSION/manifest.json)."""
    path = urllib.parse.urlsplit(manifest_url).path.split("/")
    if len(path) < 3 or path[-1] != MANIFEST_FILE:
        raise ReleaseRefused(
            f"{manifest_url}: a release manifest is at …/NAME/VERSION/{MANIFEST_FILE}"
        )
    raw = fetch(http, manifest_url, MAX_MANIFEST_BYTES, MANIFEST_TYPES)
    release = parse_release(raw)
    named = (urllib.parse.unquote(path[-3]), urllib.parse.unquote(path[-2]))
    if named != (release.name, release.version):
        raise ReleaseRefused(
            f"{manifest_url}: the folder says {named[0]} {named[1]}, the signed manifest says "
            f"{release.name} {release.version} (a release replayed under another name or version)"
        )
    return release, hashlib.sha256(raw).hexdigest()


def wheel_url(manifest_url: str, release: Release) -> str:
    """The wheel's URL: beside its manifest (its file name was checked by skills.release)."""
    return manifest_url.rsplit("/", 1)[0] + "/" + urllib.parse.quote(release.wheel_filename)


# --- search ------------------------------------------------------------------------------------


def search(
    vault: Vault,
    text: str = "",
    http: httpx.Client | None = None,
    nostr_seconds: float = QUERY_SECONDS,
) -> Catalog:
    """What every pinned peer's pod offers, and what pinned peers' Nostr keys announced on the
    owner's relays, filtered by ``text`` (in the name or description)."""
    catalog = Catalog()
    peers = list_peers(vault)
    pinned = {p.did: p.label for p in peers}
    with http or client() as session:
        for peer in peers:
            _walk_peer(session, peer, pinned, text.lower(), catalog)
        _read_announcements(vault, session, peers, pinned, text.lower(), catalog, nostr_seconds)
    catalog.offers.sort(key=lambda o: o.name)  # stable: each skill's newest first
    return catalog


def _read_announcements(
    vault: Vault,
    http: httpx.Client,
    peers: list[Peer],
    pinned: dict[str, str],
    text: str,
    catalog: Catalog,
    seconds: float,
) -> None:
    keys = {key: peer for peer in peers if (key := peer_key_for(vault, peer.did))}
    announced, dropped = fetch_announcements(list_relays(vault), sorted(keys), seconds)
    catalog.refused += [{"url": "", "found_at": "nostr", "reason": why} for why in dropped]
    seen = {o.manifest_url for o in catalog.offers}
    for a in announced:
        if a.url in seen:
            continue  # the pod walk found it already
        seen.add(a.url)
        found_at = f"nostr:{keys[a.pubkey].label}"
        try:
            check_url(a.url)
            if a.size > MAX_MANIFEST_BYTES:
                raise ReleaseRefused(
                    f"announced as {a.size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}"
                )
            release, sha = read_release(http, a.url)
            if sha != a.sha256:
                raise ReleaseRefused(f"its sha256 is {sha}, the announcement says {a.sha256}")
            if (release.name, release.version) != (a.name, a.version):
                raise ReleaseRefused(
                    f"announced as {a.name} {a.version}, signed as {release.name} {release.version}"
                )
        except ReleaseRefused as e:
            catalog.refused.append({"url": a.url, "found_at": found_at, "reason": str(e)})
            continue
        if text and text not in release.name.lower() and text not in release.description.lower():
            continue
        catalog.offers.append(offer(release, a.url, sha, pinned, found_at))


def offer(release: Release, url: str, sha: str, pinned: dict[str, str], found_at: str) -> Offer:
    return Offer(
        name=release.name,
        version=release.version,
        description=release.description,
        author_did=release.author_did,
        author_pinned=pinned.get(release.author_did),
        permissions=release.permissions,
        cosigners=release.cosigners,
        pinned_cosigners=tuple(c for c in release.cosigners if c in pinned),
        manifest_url=url,
        manifest_sha256=sha,
        found_at=found_at,
    )


def _walk_peer(
    http: httpx.Client, peer: Peer, pinned: dict[str, str], text: str, catalog: Catalog
) -> None:
    found_at = f"peer:{peer.label}"
    top = peer.url.rstrip("/") + SKILLS_CONTAINER
    try:
        names = list_container(http, top, NAME, MAX_SKILLS_LISTED)
    except ReleaseRefused as e:
        catalog.refused.append({"url": top, "found_at": found_at, "reason": str(e)})
        return
    for name in names:
        url = container_url(peer.url, name)
        try:
            versions = newest_first(list_container(http, url, VERSION, MAX_VERSIONS_LISTED))
        except ReleaseRefused as e:
            catalog.refused.append({"url": url, "found_at": found_at, "reason": str(e)})
            continue
        for version in versions[:VERSIONS_SHOWN]:
            manifest_url = f"{url}{urllib.parse.quote(version)}/{MANIFEST_FILE}"
            try:
                release, sha = read_release(http, manifest_url)
            except ReleaseRefused as e:
                catalog.refused.append(
                    {"url": manifest_url, "found_at": found_at, "reason": str(e)}
                )
                continue
            if (
                text
                and text not in release.name.lower()
                and text not in release.description.lower()
            ):
                continue
            catalog.offers.append(offer(release, manifest_url, sha, pinned, found_at))
