"""Downloading a skill release from another machine: bounded, typed, never redirected.

A release manifest and its wheel come from a peer's pod or a URL the owner gave. Each download
has a size limit checked on the announced length before reading and on the bytes while reading,
a timeout, and an expected media type; no redirect is followed (a release is read only from
where it was named), and a URL is https, or http to this machine (tests, local nodes). A
manifest is then parsed and its signature checked by skills.release, and the folders it was read
from must name the very name and version it signs: a signed release copied under another
version's folder is a replay.
"""

from __future__ import annotations

import hashlib
import urllib.parse

import httpx
from packaging.version import InvalidVersion, Version

from agent.model_sources import is_loopback
from skills.release import MANIFEST_FILE, MAX_MANIFEST_BYTES, Release, ReleaseRefused, parse_release

FETCH_TIMEOUT = 10.0
MANIFEST_TYPES = ("application/json",)
WHEEL_TYPES = ("application/octet-stream", "application/zip", "application/x-wheel+zip")


def client() -> httpx.Client:
    """The HTTP client for other nodes: no redirects, a timeout, no proxies from the environment
    (a pinned peer's URL is where the owner said)."""
    return httpx.Client(follow_redirects=False, timeout=FETCH_TIMEOUT, trust_env=False)


def check_url(url: str) -> str:
    """``url`` if it is an https URL (or http to this machine, for tests and local nodes)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url
    raise ReleaseRefused(f"{url!r}: a release is fetched over https (http only from this machine)")


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


def is_newer(version: str, than: str) -> bool:
    """Whether ``version`` comes after ``than`` in PEP 440's order (False when either is not one)."""
    try:
        return Version(version) > Version(than)
    except InvalidVersion:
        return False
