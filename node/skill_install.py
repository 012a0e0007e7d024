"""Installing and updating a skill another node shared: every check, then the ordinary install.

``install_release`` takes ``peer:PEER/NAME[@VERSION]`` (a pinned peer's pod; its newest version
when none is named) or the URL of a release manifest (…/NAME/VERSION/manifest.json). In order,
and nothing is written before the last step:

1. the manifest is downloaded (size bounded before and while reading, no redirect) and parsed
   by skills.release: the author's signature must hold, and the folders it came from must name
   its name and version;
2. the author is trusted: for ``peer:`` it is the pinned peer itself (its node's DID, or its
   owner's as its card proved: node.peer_owner), unless the owner said
   ``allow_stranger``; an author who is no pinned peer needs ``allow_stranger`` *and* as many
   co-signatures by pinned peers as the owner's policy asks (``set_cosign_policy``);
3. no skill of that name is installed (another author's, or one installed locally);
4. the wheel is downloaded (at most the size the release states), its size and sha256 checked,
   and its archive read without unpacking: no name or RECORD line leaving the folder, no link,
   bounded entries and unpacked size;
5. the registry installs it as any wheel (only unpacked; the manifest read by the confined
   runner), and the manifest the installed code reports must be the signed one, tool by tool
   (``Release.check_manifest``); if not, the skill is removed again.

The record keeps where the skill came from (``SkillInfo.origin``) so ``update_skills`` looks for
newer releases in the same container, from the same author DID: a release signed by another key
is never an update. An update that asks for a permission the installed version did not is made
only when the owner approves it; the record's other fields (the owner's tool pins) are kept, so
a changed tool is caught by the pins check when the skill starts.
"""

from __future__ import annotations

import csv
import io
import stat
import tempfile
import urllib.parse
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from node.peer_owner import pinned_authors
from node.peers import Peer, find_peer
from node.skill_catalog import CatalogError, container_url, is_version, list_versions
from node.skill_download import (
    WHEEL_TYPES,
    check_url,
    client,
    fetch,
    is_newer,
    read_release,
    wheel_url,
)
from skills.errors import SkillError
from skills.manifest import NAME
from skills.registry import SkillInfo, UnknownSkill
from skills.release import MANIFEST_FILE, Release, ReleaseRefused
from store.vault import Vault

if TYPE_CHECKING:
    from node.node import Node

PEER_PREFIX = "peer:"
POLICY_KIND = "skill-policy"
COSIGN_POLICY = "cosign"
MAX_COSIGNERS_REQUIRED = 8
MAX_WHEEL_ENTRIES = 2000
MAX_UNPACKED_BYTES = 64 * 1024 * 1024  # a zip bomb stops here, before pip sees it
MAX_RECORD_BYTES = 1024 * 1024


def is_release_source(source: str) -> bool:
    """Whether ``source`` names a shared release (this module) rather than a local wheel or package."""
    return source.startswith((PEER_PREFIX, "https://", "http://"))


# --- the owner's policy on strangers -----------------------------------------------------------


def cosign_policy(vault: Vault) -> int:
    """How many pinned peers must co-sign a release whose author is not one (0: none)."""
    record = vault.get_record(POLICY_KIND, COSIGN_POLICY)
    return int(record["required"]) if record else 0


def set_cosign_policy(vault: Vault, required: int) -> int:
    if type(required) is not int or not 0 <= required <= MAX_COSIGNERS_REQUIRED:
        raise SkillError(f"the co-signatures required must be 0..{MAX_COSIGNERS_REQUIRED}")
    vault.put_record(POLICY_KIND, COSIGN_POLICY, {"required": required})
    return required


def check_trust(
    release: Release,
    peer: Peer | None,
    pinned: dict[str, Peer],
    required: int,
    allow_stranger: bool,
) -> None:
    """ReleaseRefused unless the owner trusts this release's author (module docstring, step 2).
    ``pinned``: each pinned peer by the DIDs that sign for it (node.peer_owner.pinned_authors)."""
    where, author = f"{release.name} {release.version}", release.author_did
    if peer is not None and pinned.get(author) != peer and not allow_stranger:
        raise ReleaseRefused(
            f"{where} is signed by {author}, not by the pinned peer {peer.label} ({peer.did}) "
            "or its owner; pass --stranger to install a stranger's release from its pod"
        )
    if author in pinned:
        return
    if not allow_stranger:
        raise ReleaseRefused(
            f"{where}: its author {author} is not a pinned peer; pass --stranger to install it anyway"
        )
    vouched = {pinned[c].did for c in release.cosigners if c in pinned}  # a peer counts once
    if len(vouched) < required:
        others = [c for c in release.cosigners if c not in pinned]
        raise ReleaseRefused(
            f"{where}: its author is not a pinned peer and {len(vouched)} pinned peer(s) co-signed "
            f"it; your policy asks for {required}"
            + (f" (co-signed by DIDs you have not pinned: {', '.join(others)})" if others else "")
        )


# --- the wheel, read as an archive -------------------------------------------------------------


def check_wheel_archive(wheel: bytes, where: str) -> None:
    """ReleaseRefused unless ``wheel`` is a zip whose every file (and RECORD line) stays inside
    the folder it is unpacked into, with no link, and a bounded number and size of files."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(wheel))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as e:
        raise ReleaseRefused(f"{where}: the wheel is not a zip archive ({e})") from None
    if len(entries) > MAX_WHEEL_ENTRIES:
        raise ReleaseRefused(
            f"{where}: the wheel holds {len(entries)} files; at most {MAX_WHEEL_ENTRIES}"
        )
    if sum(e.file_size for e in entries) > MAX_UNPACKED_BYTES:
        raise ReleaseRefused(f"{where}: the wheel unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    for entry in entries:
        _check_member(entry.filename, where)
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise ReleaseRefused(f"{where}: the wheel holds a symbolic link: {entry.filename!r}")
    records = [e for e in entries if e.filename.endswith(".dist-info/RECORD")]
    if len(records) != 1:
        raise ReleaseRefused(f"{where}: a wheel has one .dist-info/RECORD, this one {len(records)}")
    if records[0].file_size > MAX_RECORD_BYTES:
        raise ReleaseRefused(f"{where}: the wheel's RECORD is over {MAX_RECORD_BYTES} bytes")
    try:
        text = archive.read(records[0]).decode("utf-8")
    except (UnicodeDecodeError, zipfile.BadZipFile, ValueError) as e:
        raise ReleaseRefused(f"{where}: the wheel's RECORD cannot be read ({e})") from None
    for row in csv.reader(io.StringIO(text)):
        if row:
            _check_member(row[0], where)


def _check_member(name: str, where: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or ":" in parts[0]
        or ".." in parts
        or "\x00" in name
    ):
        raise ReleaseRefused(f"{where}: the wheel names a file outside its folder: {name!r}")


# --- install -----------------------------------------------------------------------------------


def resolve(vault: Vault, source: str, http: httpx.Client) -> tuple[str, Peer | None]:
    """The release manifest's URL that ``source`` names, and the pinned peer it is read from."""
    if not source.startswith(PEER_PREFIX):
        return check_url(source), None
    # PEER is a pinned peer's name or DID (neither holds a "/"); whatever follows is NAME@VERSION
    ref, slash, wanted = source.removeprefix(PEER_PREFIX).partition("/")
    name, at, version = wanted.partition("@")
    if not slash or not ref:
        raise ReleaseRefused(f"{source!r}: write peer:PEER/NAME or peer:PEER/NAME@VERSION")
    if not NAME.match(name) or (at and not is_version(version)):
        raise ReleaseRefused(f"{source!r}: {wanted!r} is not a skill name and version")
    peer = find_peer(vault, ref)
    if peer is None:
        raise ReleaseRefused(f"{ref!r} is not a pinned peer; flurry peers add URL first")
    container = container_url(peer.url, name)
    if not at:
        versions = _versions(http, container)
        if not versions:
            raise ReleaseRefused(f"{peer.label} publishes no release of {name}")
        version = versions[0]
    return f"{container}{urllib.parse.quote(version)}/{MANIFEST_FILE}", peer


def _versions(http: httpx.Client, container: str) -> list[str]:
    """The versions a skill's container lists, newest first."""
    try:
        return list_versions(container, http)
    except CatalogError as e:
        raise ReleaseRefused(str(e)) from None


def _download_wheel(http: httpx.Client, manifest_url: str, release: Release) -> bytes:
    where = f"{release.name} {release.version}"
    wheel = fetch(http, wheel_url(manifest_url, release), release.wheel_size, WHEEL_TYPES)
    release.check_wheel(wheel)
    check_wheel_archive(wheel, where)
    return wheel


def _origin(manifest_url: str, peer: Peer | None, release: Release, sha: str) -> dict:
    return {
        "manifest_url": manifest_url,
        # …/NAME/VERSION/manifest.json → …/NAME/: where update_skills looks for newer versions
        "container": manifest_url.rsplit("/", 2)[0] + "/",
        "peer": peer.did if peer else None,
        "author_did": release.author_did,
        "version": release.version,
        "manifest_sha256": sha,
    }


def install_release(
    node: Node, source: str, allow_stranger: bool = False, http: httpx.Client | None = None
) -> SkillInfo:
    """Install the release ``source`` names, checked at every step (module docstring); the skill
    waits for the owner's approval like any other. ReleaseRefused (or SkillError) says why not;
    then nothing of it is installed."""
    pinned = pinned_authors(node.vault)
    with http or client() as session:
        manifest_url, peer = resolve(node.vault, source, session)
        release, sha = read_release(session, manifest_url)
        check_trust(release, peer, pinned, cosign_policy(node.vault), allow_stranger)
        _refuse_collision(node, release)
        wheel = _download_wheel(session, manifest_url, release)
    with tempfile.TemporaryDirectory(prefix="flurry-release-") as folder:
        path = Path(folder) / release.wheel_filename
        path.write_bytes(wheel)
        manifest = node.skills.install(path, origin=_origin(manifest_url, peer, release, sha))
    try:
        release.check_manifest(manifest)
    except ReleaseRefused:
        node.skills.remove(manifest.name)
        raise
    return node.skills.info(manifest.name)


def _refuse_collision(node: Node, release: Release) -> None:
    try:
        installed = node.skills.info(release.name)
    except UnknownSkill:
        return
    origin = installed.origin or {}
    if origin.get("author_did") == release.author_did:
        raise ReleaseRefused(
            f"{release.name} from {release.author_did} is installed already "
            f"(version {origin.get('version')}); flurry skills update {release.name}"
        )
    who = f"by {origin['author_did']}" if origin else "installed here, not from a release"
    raise ReleaseRefused(
        f"a skill named {release.name!r} is installed ({who}); a release by "
        f"{release.author_did} may not take its name"
    )


# --- update ------------------------------------------------------------------------------------


def update_skills(
    node: Node, name: str = "", approve: bool = False, http: httpx.Client | None = None
) -> list[dict]:
    """Look for newer releases of installed shared skills (all, or ``name``): one result per
    skill, {name, status: updated | up to date | refused, from, to, reasons, added}. With
    ``approve``, permissions a newer release adds are granted (the owner said yes to them);
    without, such an update is refused and the installed version stays."""
    if name:
        targets = [node.skills.info(name)]
        if targets[0].origin is None:
            raise SkillError(f"{name} was not installed from a release; nothing to update it from")
    else:
        targets = [i for i in node.skills.list() if i.origin]
    pinned = pinned_authors(node.vault)
    results = []
    with http or client() as session:
        for info in targets:
            try:
                results.append(_update_one(node, info, session, pinned, approve))
            except SkillError as e:
                version = (info.origin or {}).get("version")
                results.append(
                    {"name": info.name, "status": "refused", "from": version, "to": version}
                    | {"reasons": [str(e)], "added": []}
                )
    return results


def _update_one(
    node: Node, info: SkillInfo, http: httpx.Client, pinned: dict[str, Peer], approve: bool
) -> dict:
    assert info.origin is not None  # update_skills picks only skills installed from a release
    origin = info.origin
    current, author = origin["version"], origin["author_did"]
    result: dict = {"name": info.name, "from": current, "to": current, "reasons": [], "added": []}
    versions = _versions(http, origin["container"])
    chosen: tuple[str, Release, str] | None = None
    for version in (v for v in versions if is_newer(v, current)):
        url = f"{origin['container']}{urllib.parse.quote(version)}/{MANIFEST_FILE}"
        try:
            release, sha = read_release(http, url)
        except ReleaseRefused as e:
            result["reasons"].append(str(e))
            continue
        if release.author_did != author:
            result["reasons"].append(
                f"{info.name} {version} is signed by {release.author_did}, not by "
                f"{author} who signed the installed one: a release by another key is never an update"
            )
            continue
        chosen = (url, release, sha)
        break
    if chosen is None:
        return {**result, "status": "refused" if result["reasons"] else "up to date"}
    url, release, sha = chosen
    where = f"{release.name} {release.version}"
    # the owner accepted this author at install; a stranger's update needs its co-signers again
    check_trust(release, None, pinned, cosign_policy(node.vault), allow_stranger=True)
    added = sorted(set(release.permissions) - set(info.requested))
    if added and not approve:
        raise ReleaseRefused(
            f"{where} asks for permissions {info.name} {current} did not: {', '.join(added)}; "
            f"not updated (approve them: flurry skills update {info.name} --yes)"
        )
    wheel = _download_wheel(http, url, release)
    granted = tuple(p for p in info.granted if p in release.permissions) + tuple(added)
    with tempfile.TemporaryDirectory(prefix="flurry-release-") as folder:
        path = Path(folder) / release.wheel_filename
        path.write_bytes(wheel)
        node.stop_skill(info.name)  # a running process keeps the code it was started with
        node.skills.replace_code(
            info.name,
            path,
            release.check_manifest,
            granted=granted,
            origin={**_origin(url, None, release, sha), "peer": origin.get("peer")},
        )
    return {**result, "status": "updated", "to": release.version, "added": added}
