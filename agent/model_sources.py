"""What ``flurry models pull`` may fetch: a source the owner typed, resolved and checked.

Owns turning a catalog name, an ``hf:OWNER/REPO/FILE.gguf[@REV]`` or an ``https://`` URL into
a ``Source`` (URL, file name in the models folder, pinned sha256), and the rules a URL and a
file name must meet: https anywhere, plain http only on this machine and never reached by a
remote server's redirect; a plain ``.gguf`` name that cannot leave the models folder or replace
a default model's file. The download itself is ``agent.pull``'s.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from agent.models import CATALOG, HUB_CATALOG, HubModel, ModelError

HF_ENDPOINT = "https://huggingface.co"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_HF_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Source:
    url: str
    filename: str  # the name in the models folder
    sha256: str | None  # pinned by the catalog
    label: str  # what the owner typed


def hf_endpoint() -> str:
    """Where ``hf:`` sources live; FLURRY_HF_ENDPOINT exists for mirrors and for tests on loopback."""
    return (os.environ.get("FLURRY_HF_ENDPOINT") or HF_ENDPOINT).rstrip("/")


def hf_url(spec: str) -> str:
    """``OWNER/REPO/PATH.gguf[@REVISION]`` → the hub's public file URL."""
    spec, _, revision = spec.partition("@")
    parts = spec.split("/")
    revision = revision or "main"
    if len(parts) < 3 or not all(_HF_PART.match(p) for p in parts) or not _HF_PART.match(revision):
        raise ModelError(f"hf:{spec}: expected hf:OWNER/REPO/FILE.gguf (optionally @REVISION)")
    owner, repo, path = parts[0], parts[1], "/".join(parts[2:])
    return f"{hf_endpoint()}/{owner}/{repo}/resolve/{quote(revision)}/{quote(path)}"


def resolve_source(source: str, name: str | None = None, sha256: str | None = None) -> Source:
    """A catalog name, ``hf:OWNER/REPO/FILE.gguf[@REV]`` or an ``https://`` URL; ``sha256``
    is the digest the owner expects (from the publisher's page), checked like a catalog pin."""
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not _SHA256.match(sha256):
            raise ModelError(f"--sha256 {sha256!r}: expected 64 hexadecimal digits")
    if source in HUB_CATALOG:
        if name:
            raise ModelError(
                f"{source} is a catalog model; --name is only for URLs and hf: sources"
            )
        model: HubModel = HUB_CATALOG[source]
        if sha256 and model.sha256 and sha256 != model.sha256:
            raise ModelError(
                f"--sha256 differs from the sha256 the catalog pins for {source} ({model.sha256})"
            )
        return Source(
            hf_url(model.source.removeprefix("hf:")), model.filename, sha256 or model.sha256, source
        )
    if source.startswith("hf:"):
        url = hf_url(source.removeprefix("hf:"))
    elif "://" in source:
        url = source
    else:
        known = ", ".join(HUB_CATALOG)
        raise ModelError(
            f"{source!r}: give an https:// URL, hf:OWNER/REPO/FILE.gguf or a catalog name ({known})"
        )
    check_url(url)
    filename = name or unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    check_filename(filename)
    return Source(url, filename, sha256, source)


def check_filename(filename: str) -> None:
    """A plain name ending in .gguf: nothing that could leave the models folder or hide in it."""
    if not _NAME.match(filename) or not filename.lower().endswith(".gguf"):
        raise ModelError(
            f"{filename!r} is not a usable model file name (letters, digits, . _ + -, ending in .gguf; choose one with --name)"
        )
    if filename in {m.filename for m in CATALOG.values()}:
        raise ModelError(
            f"{filename} is the name of a default model's file; choose another with --name"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine without asking DNS (an address, or "localhost").
    The one test of "this machine" for every place that allows plain http or plain mail to it
    (model downloads, a peer's skill releases, the mail account)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, came_from: str | None = None) -> None:
    """https anywhere; http only on this machine, and only when not sent there by a remote server."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise ModelError(f"{url}: no host")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback(host):
        if came_from is None or is_loopback(urlsplit(came_from).hostname or ""):
            return
        raise ModelError(
            f"{urlsplit(came_from).hostname} redirected to {url}, on this machine: refused"
        )
    what = f"a redirect to {url}" if came_from else url
    raise ModelError(f"refusing {what}: only https:// sources (or http:// on this machine)")
