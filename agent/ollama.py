"""Ollama's models, loaded where Ollama keeps them: no second copy, no Ollama server.

Ollama stores a model as a manifest and content-addressed blobs in its models folder
(``$OLLAMA_MODELS``, else ``~/.ollama/models``, else a Linux service install's
``/usr/share/ollama/.ollama/models``):

    manifests/HOST/NAMESPACE/MODEL/TAG   a Docker/OCI-style JSON: {"layers": [{mediaType, digest, size}]}
    blobs/sha256-HEX                     each layer's bytes, named by their sha256 (older: sha256:HEX)

The layer of media type ``application/vnd.ollama.image.model`` is the GGUF itself, so
``ollama:qwen2.5:3b`` (HOST registry.ollama.ai, NAMESPACE library, TAG 3b; no tag means
``latest``) resolves to that blob's path and llama.cpp maps it as it lies.

Everything in that folder is read as untrusted input: another program writes it. A manifest
is read only up to ``MAX_MANIFEST_BYTES``; a name, digest or link that could lead out of the
folder is refused; the blob must have the size the manifest says and start with the GGUF
magic. Each refusal is a ModelError that says what to do. The blob's sha256 is its name, but
it is not checked here (that means reading gigabytes at every start): ChatModel.model_sha256
hashes the file itself when a receipt needs the digest.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ModelError

PREFIX = "ollama:"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
# Real manifests are well under 2 KiB; the bound keeps a huge or endless file from being read.
MAX_MANIFEST_BYTES = 1 << 20
GGUF_MAGIC = b"GGUF"

# Ollama's own name rules, a little narrower: one folder name each, never "." or "..", no
# separator (a host may carry a port: localhost:5000).
# Matched with fullmatch: "$" would let a trailing newline through.
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,79}")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}(:[0-9]{1,5})?")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class OllamaModel:
    name: str  # as `ollama list` writes it: qwen2.5:3b, user/name:tag, host/namespace/name:tag
    blob: Path  # the GGUF, in Ollama's blobs folder
    size: int
    sha256: str  # the manifest's digest of the blob (its file name), not recomputed


def models_folder() -> Path | None:
    """Ollama's models folder, where one exists: ``$OLLAMA_MODELS`` when set (Ollama then reads
    no other), else ``~/.ollama/models``, else ``/usr/share/ollama/.ollama/models``."""
    configured = os.environ.get("OLLAMA_MODELS", "").strip()
    if configured:
        candidates = [Path(configured).expanduser()]
    else:
        candidates = [
            Path.home() / ".ollama" / "models",
            Path("/usr/share/ollama/.ollama/models"),  # the Linux installer's service user
        ]
    return next((c for c in candidates if c.is_dir()), None)


def find_model(name: str, folder: Path | None = None) -> OllamaModel:
    """The model Ollama names ``name`` (``qwen2.5:3b``, ``qwen2.5``, ``user/name:tag``,
    ``host/namespace/name:tag``; an ``ollama:`` prefix is allowed), checked and ready to load."""
    name = name.removeprefix(PREFIX)
    host, namespace, model, tag = parse_name(name)
    folder = folder or models_folder()
    if folder is None:
        raise ModelError(
            f"no Ollama models folder: {_where()}. Install Ollama and `ollama pull {name}`, "
            "or set OLLAMA_MODELS to the folder that holds its manifests/ and blobs/"
        )
    manifest = folder / "manifests" / host / namespace / model / tag
    if not manifest.exists():
        raise ModelError(
            f"Ollama has no {display_name(host, namespace, model, tag)} in {folder}: "
            f"`ollama pull {name}`, or see `flurry models` for the ones it has"
        )
    return _read(folder, manifest, display_name(host, namespace, model, tag))


def list_models(folder: Path) -> list[tuple[str, OllamaModel | ModelError]]:
    """Every model Ollama holds in ``folder``, by name, with what it resolves to or why it
    cannot be used (one bad manifest spoils only its own line)."""
    found: list[tuple[str, OllamaModel | ModelError]] = []
    for host in _folders(folder / "manifests"):
        for namespace in _folders(host):
            for model in _folders(namespace):
                for manifest in _entries(model):
                    name = display_name(host.name, namespace.name, model.name, manifest.name)
                    try:
                        parse_name(name)  # a folder name Ollama would not write is not read
                        found.append((name, _read(folder, manifest, name)))
                    except ModelError as e:
                        found.append((name, e))
    return found


def parse_name(name: str) -> tuple[str, str, str, str]:
    """``[[HOST/]NAMESPACE/]MODEL[:TAG]`` → (host, namespace, model, tag), Ollama's defaults
    filled in; each part is one plain folder name or the name is refused."""
    if ":" in name.rsplit("/", 1)[-1]:  # a host's port (localhost:5000/…) is not a tag
        path, _, tag = name.rpartition(":")
    else:
        path, tag = name, DEFAULT_TAG
    parts = path.split("/")
    if len(parts) == 1:
        parts = [DEFAULT_HOST, DEFAULT_NAMESPACE, *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_HOST, *parts]
    if (
        len(parts) != 3
        or not _HOST.fullmatch(parts[0])
        or not all(_PART.fullmatch(p) for p in (parts[1], parts[2], tag))
    ):
        raise ModelError(
            f"{PREFIX}{name}: not an Ollama model name; write it as `ollama list` does, "
            "e.g. ollama:qwen2.5:3b, ollama:user/name:tag or ollama:host/namespace/name:tag"
        )
    return parts[0], parts[1], parts[2], tag


def display_name(host: str, namespace: str, model: str, tag: str) -> str:
    """The name as ``ollama list`` shows it: the default host and namespace left out."""
    if host != DEFAULT_HOST:
        return f"{host}/{namespace}/{model}:{tag}"
    if namespace != DEFAULT_NAMESPACE:
        return f"{namespace}/{model}:{tag}"
    return f"{model}:{tag}"


def _read(folder: Path, manifest: Path, name: str) -> OllamaModel:
    layer = _model_layer(_load_manifest(manifest, name), name)
    digest, size = layer.get("digest"), layer.get("size")
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ModelError(
            f"Ollama's manifest of {name} names its model by {digest!r}, not sha256:<64 hex digits>: "
            f"refusing it; `ollama pull {name}` again"
        )
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ModelError(
            f"Ollama's manifest of {name} gives no size for its model: refusing it; `ollama pull {name}` again"
        )
    hex_digest = match[1]
    blobs = folder / "blobs"
    # sha256-HEX today; sha256:HEX in Ollama's early versions.
    blob = next(
        (p for p in (blobs / f"sha256-{hex_digest}", blobs / f"sha256:{hex_digest}") if p.exists()),
        None,
    )
    if blob is None:
        raise ModelError(
            f"Ollama's model file for {name} (sha256-{hex_digest[:12]}…) is missing from {blobs}: `ollama pull {name}` again"
        )
    try:
        # A link that leads elsewhere is refused: the manifest's digest vouches for a file in
        # blobs/, not for wherever a link points. (blobs/ itself may be a link, to another disk.)
        if blob.resolve().parent != blobs.resolve():
            raise ModelError(
                f"Ollama's model file for {name} ({blob.name}) links outside {blobs}: refusing it; "
                f"`ollama rm {name}` and `ollama pull {name}` again"
            )
        info = blob.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(f"{blob} is not a regular file: refusing it")
        if info.st_size != size:
            raise ModelError(
                f"Ollama's model file for {name} has {info.st_size} bytes, its manifest says {size}: "
                f"an interrupted or damaged download; `ollama pull {name}` again"
            )
        with open(blob, "rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as e:
        raise ModelError(f"cannot read Ollama's model file for {name}: {e}") from None
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"Ollama's model file for {name} is not a GGUF file (flurry loads GGUF models only): refusing it"
        )
    return OllamaModel(name, blob, size, hex_digest)


def _load_manifest(manifest: Path, name: str) -> dict:
    try:
        # O_NONBLOCK: a FIFO in the folder must not hang the node at open; it is refused below.
        fd = os.open(manifest, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ModelError(f"Ollama's manifest of {name} ({manifest}) is not a regular file")
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise ModelError(f"cannot read Ollama's manifest of {name}: {e}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ModelError(
            f"Ollama's manifest of {name} is over {MAX_MANIFEST_BYTES // 1024} KiB, which no real one is: "
            f"refusing it; `ollama rm {name}` and pull it again"
        )
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("layers"), list):
        raise ModelError(
            f"Ollama's manifest of {name} ({manifest}) is not a manifest (JSON with layers): "
            f"`ollama pull {name}` again"
        )
    return parsed


def _model_layer(manifest: dict, name: str) -> dict:
    layers = [
        layer
        for layer in manifest["layers"]
        if isinstance(layer, dict) and layer.get("mediaType") == MODEL_MEDIA_TYPE
    ]
    if len(layers) != 1:
        what = "no GGUF model layer" if not layers else f"{len(layers)} model layers"
        raise ModelError(
            f"Ollama's manifest of {name} has {what} ({MODEL_MEDIA_TYPE}); flurry loads a model "
            "made of one GGUF file"
        )
    return layers[0]


def _folders(folder: Path) -> list[Path]:
    return [p for p in _entries(folder) if p.is_dir()]


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:  # missing or unreadable: nothing listed from it
        return []


def _where() -> str:
    configured = os.environ.get("OLLAMA_MODELS", "").strip()
    if configured:
        return f"OLLAMA_MODELS={configured} is not a folder"
    return "OLLAMA_MODELS is not set, and neither ~/.ollama/models nor /usr/share/ollama/.ollama/models exists"
