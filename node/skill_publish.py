"""Publishing a skill: a signed release in the owner's pod, and an optional Nostr announcement.

``flurry skills publish PATH`` takes a skill's project folder or a built wheel:

1. A folder is built into a wheel by pip inside the sandbox, as install builds one
   (skills.wheels.build_wheel; its files dated 1980, so the same project builds the same bytes).
   A wheel over ``MAX_WHEEL_BYTES`` is refused before it is read.
2. The skill's manifest is read from the wheel by a confined runner, as install reads it: the
   node never imports the skill, not even its owner's own.
3. The release manifest (skills.release.make_release) is signed with the owner's key and names
   the owner's DID as its author.
4. Wheel, then manifest, go into the pod at ``/pod/public/skills/NAME/VERSION/`` (the manifest
   last: a reader who finds it finds the wheel too), and ``/pod/public/skills/`` is made readable
   by anyone (the pod's public rule: a GET there needs no signature).

A version is immutable: publishing NAME@VERSION again with other contents (another wheel, other
tools or permissions, another author) is refused; the same release again changes nothing. The
manifest is stored as its RFC 8785 bytes, so the same release is the same bytes.

With ``announce``, a NIP-94 file-metadata event (kind 1063) goes to the owner's relays, signed
with the node's Nostr key: ``url`` the manifest's URL on the pod, ``m`` application/json, ``x``
and ``size`` the manifest's sha256 and length, ``t`` flurry-skill, ``name``, ``version``; the
content is the skill's description. The URL is the first of the config's ``public_urls``, else
the address the running server listens on; without either, or without relays, announcing is
refused before anything is written.

A skill whose own manifest names another author is refused: a release names its publisher as
its author. An installed skill given by NAME is refused: the node keeps the skill's unpacked files, not the
wheel it came from, so it could not publish the very bytes that were reviewed. Publish from the
project folder or the wheel.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import nostr_sdk

from identity.jws import canonical_json
from identity.nostr_key import sign_event
from node.errors import OwnerError
from node.nostr_wire import NostrError, NostrWire, list_relays, run_briefly
from skills.manifest import NAME
from skills.registry import UnknownSkill
from skills.release import MANIFEST_FILE, MAX_WHEEL_BYTES, make_release
from skills.wheels import build_wheel, wheel_manifest
from store.pod_store import PreconditionFailed

if TYPE_CHECKING:  # annotations only: node.node builds the broker on modules that import this one
    from node.node import Node

SKILLS_CONTAINER = "/pod/public/skills/"
MANIFEST_TYPE = "application/json"
WHEEL_TYPE = "application/octet-stream"
KIND_FILE_METADATA = 1063  # NIP-94
ANNOUNCE_TOPIC = "flurry-skill"


class PublishRefused(OwnerError):
    """The skill cannot be published as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    manifest_path: str  # in the pod
    wheel_path: str
    manifest_sha256: str
    manifest_size: int
    written: bool  # False: exactly this release was there already
    announced: dict | None = None  # the relays' answer when announced

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "manifest": self.manifest_path,
            "wheel": self.wheel_path,
            "manifest_sha256": self.manifest_sha256,
            "manifest_size": self.manifest_size,
            "written": self.written,
            "announced": self.announced,
        }


def release_folder(name: str, version: str) -> str:
    """The pod container of one release: ``/pod/public/skills/NAME/VERSION/``."""
    return f"{SKILLS_CONTAINER}{name}/{version}/"


def publish_skill(node: Node, source: str, *, announce: bool = False) -> Published:
    """Publish the skill at ``source`` (a project folder or a ``.whl``) into the node's pod; with
    ``announce``, announce it on the owner's relays. See the module's docstring."""
    base_url = _pod_url(node) if announce else None
    if announce and not list_relays(node.vault):
        raise PublishRefused(
            "announcing needs a relay; add one (flurry nostr relays add wss://…) or publish "
            "without --announce"
        )
    with tempfile.TemporaryDirectory(prefix="flurry-publish-") as work:
        wheel = _wheel_of(node, source, Path(work))
        wheel_bytes = wheel.read_bytes()
        manifest = wheel_manifest(wheel)
    if manifest.author_did and manifest.author_did.partition("#")[0] != node.keys.owner_did:
        # Publishing another author's skill under your DID would pass it off as yours.
        raise PublishRefused(
            f"{manifest.name}'s manifest names its author {manifest.author_did}, not you "
            f"({node.keys.owner_did}): a release is published by its author"
        )
    document = make_release(
        manifest, wheel.name, wheel_bytes, node.keys.owner_key, node.keys.owner_did
    )
    body = canonical_json(document)
    folder = release_folder(manifest.name, manifest.version)
    written = _store(node, folder, document, body, wheel.name, wheel_bytes)
    public = node.grants.public_rules()
    if "read" not in public.get(SKILLS_CONTAINER, frozenset()):
        node.grants.set_public_modes(SKILLS_CONTAINER, ["read"])
    published = Published(
        manifest.name,
        manifest.version,
        folder + MANIFEST_FILE,
        folder + wheel.name,
        hashlib.sha256(body).hexdigest(),
        len(body),
        written,
    )
    if announce:
        assert base_url is not None  # found above, before anything was written
        return _announce(node, published, manifest.description, base_url)
    return published


def announcement(
    node: Node, published: Published, description: str, manifest_url: str
) -> nostr_sdk.Event:
    """The NIP-94 event (kind 1063) that announces ``published``, signed with the node's Nostr key."""
    tags = [
        ["url", manifest_url],
        ["m", MANIFEST_TYPE],
        ["x", published.manifest_sha256],
        ["size", str(published.manifest_size)],
        ["t", ANNOUNCE_TOPIC],
        ["name", published.name],
        ["version", published.version],
    ]
    return sign_event(
        node.keys.nostr_key.sdk_keys(),
        KIND_FILE_METADATA,
        description,
        tags,
        nostr_sdk.Timestamp.now(),
    )


# --- inside ----------------------------------------------------------------------------------


def _wheel_of(node: Node, source: str, work: Path) -> Path:
    """The wheel to publish: ``source`` itself, or built from the folder ``source`` into ``work``."""
    path = Path(source).expanduser()
    if path.is_dir():
        wheel = build_wheel(path, work)
        _check_size(wheel)
        return wheel
    if path.is_file():
        if path.suffix != ".whl":
            raise PublishRefused(f"{source}: give a skill's project folder or a built wheel (.whl)")
        _check_size(path)
        return path
    if NAME.match(source):
        try:
            node.skills.info(source)
        except UnknownSkill:
            pass
        else:
            raise PublishRefused(
                f"{source} is an installed skill: the node keeps its unpacked files, not the wheel "
                "it came from, so it cannot publish the bytes you reviewed; publish from the "
                "project folder or the wheel: flurry skills publish PATH"
            )
    raise PublishRefused(f"{source}: no such project folder or wheel (.whl)")


def _check_size(wheel: Path) -> None:
    size = wheel.stat().st_size
    if size > MAX_WHEEL_BYTES:
        raise PublishRefused(
            f"{wheel.name} is {size} bytes; a published wheel holds at most {MAX_WHEEL_BYTES} "
            "bytes (the pod's resource limit)"
        )


def _store(
    node: Node, folder: str, document: dict, body: bytes, wheel_name: str, wheel: bytes
) -> bool:
    """Write the release into ``folder``; False when exactly it is there already. A release with
    other contents under the same name and version is refused: a version is immutable."""
    manifest_path = folder + MANIFEST_FILE
    existing = node.pod.get(manifest_path)
    if existing is not None:
        _, stored = node.pod.read(manifest_path)
        if _same_release(stored, document) and _holds(node, folder + wheel_name, wheel):
            return False
        raise PublishRefused(
            f"{document['name']} {document['version']} is published already, with other contents "
            f"(see {manifest_path}); a published version never changes: raise the version and "
            "publish again"
        )
    # Left by a publish that stopped half way (no manifest yet): cleared, so that the folder
    # holds this release and nothing else.
    entry = node.pod.get(folder)
    for member in entry.members if entry is not None else ():
        if member != wheel_name and not member.endswith("/"):
            node.pod.delete(folder + member)
    node.pod.put(folder + wheel_name, wheel, WHEEL_TYPE, base=folder + wheel_name)
    try:
        node.pod.put(manifest_path, body, MANIFEST_TYPE, base=manifest_path, if_none_match=["*"])
    except PreconditionFailed:  # another publish of the same version won the race
        raise PublishRefused(
            f"{document['name']} {document['version']} was published meanwhile; publish again "
            "to see whether it is this release"
        ) from None
    return True


def _same_release(stored: bytes, document: dict) -> bool:
    """Whether the stored manifest is ``document``, reviewers' co-signatures aside."""
    try:
        found = json.loads(stored)
    except ValueError:
        return False
    if not isinstance(found, dict):
        return False

    def payload(d: dict) -> dict:
        return {k: v for k, v in d.items() if k != "signatures"}

    return payload(found) == payload(document)


def _holds(node: Node, path: str, data: bytes) -> bool:
    entry = node.pod.get(path)
    return entry is not None and entry.size == len(data) and node.pod.read(path)[1] == data


def _pod_url(node: Node) -> str:
    """Where peers reach this node's pod: config's first public URL, else the running server's."""
    urls = node.config.public_urls
    url = urls[0] if urls else node.home.running_node()
    if url is None:
        raise PublishRefused(
            "announcing needs the URL where peers reach this node's pod: set public_urls in "
            "config.json, or start `flurry serve` and publish again"
        )
    return url.rstrip("/")


def _announce(node: Node, published: Published, description: str, base_url: str) -> Published:
    manifest_url = base_url + quote(published.manifest_path)
    event = announcement(node, published, description, manifest_url)
    details = {"skill": published.name, "version": published.version, "url": manifest_url}
    wire = node.nostr
    try:
        if isinstance(wire, NostrWire) and wire.running:
            sent = wire.announce(event, details)
        else:
            sent = run_briefly(node, lambda brief: brief.announce(event, details))
    except NostrError as e:
        raise PublishRefused(
            f"{published.name} {published.version} is in the pod, but the announcement failed: {e}"
        ) from None
    return replace(published, announced=sent)
