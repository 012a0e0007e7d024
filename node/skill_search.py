"""Finding shared skills: what pinned peers publish in their pods (node.skill_catalog walks
them), and what their Nostr keys announce on the owner's relays (node.skill_announcements).

Every release found is downloaded and checked as an install would check it
(node.skill_download.read_release: bounded, no redirect, the author's signature, the folders
naming its name and version); only those that pass are offered, the others are reported as
refused, with why. An announcement only points at a manifest: the bytes read there must have
the sha256 the announcement states. Each offer says whether its author, and which of its
co-signers, are pinned peers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import httpx

from node.nostr_peers import peer_key_for
from node.nostr_wire import list_relays
from node.peer_owner import pinned_authors
from node.peers import Peer, list_peers
from node.skill_announcements import QUERY_SECONDS, fetch_announcements
from node.skill_catalog import CatalogError, list_published
from node.skill_download import check_url, client, read_release
from skills.release import MAX_MANIFEST_BYTES, Release, ReleaseRefused
from store.vault import Vault

VERSIONS_SHOWN = 3  # releases of one skill checked and shown, newest first


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
    pinned = pinned_authors(vault)
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
    pinned: dict[str, Peer],
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


def offer(release: Release, url: str, sha: str, pinned: dict[str, Peer], found_at: str) -> Offer:
    return Offer(
        name=release.name,
        version=release.version,
        description=release.description,
        author_did=release.author_did,
        author_pinned=pinned[release.author_did].label if release.author_did in pinned else None,
        permissions=release.permissions,
        cosigners=release.cosigners,
        pinned_cosigners=tuple(c for c in release.cosigners if c in pinned),
        manifest_url=url,
        manifest_sha256=sha,
        found_at=found_at,
    )


def _walk_peer(
    http: httpx.Client, peer: Peer, pinned: dict[str, Peer], text: str, catalog: Catalog
) -> None:
    found_at = f"peer:{peer.label}"
    try:
        listed = list_published(peer.url, http, max_versions=VERSIONS_SHOWN)
    except CatalogError as e:
        catalog.refused.append({"url": peer.url, "found_at": found_at, "reason": str(e)})
        return
    for item in listed:
        try:
            release, sha = read_release(http, item.manifest_url)
        except ReleaseRefused as e:
            catalog.refused.append(
                {"url": item.manifest_url, "found_at": found_at, "reason": str(e)}
            )
            continue
        if text and text not in release.name.lower() and text not in release.description.lower():
            continue
        catalog.offers.append(offer(release, item.manifest_url, sha, pinned, found_at))
