"""Ollama's models loaded where Ollama keeps them (agent.ollama): an Ollama-style models folder,
written here in Ollama's on-disk layout around the real default chat model, is listed,
resolved, loaded in process and chosen through the real command line; and a folder that
lies (names that climb out, manifests that point elsewhere, blobs that are not what the
manifest says) gets a clear refusal, never a crash or a file outside the folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from agent.models import CATALOG, DEFAULT_CHAT_MODEL, ModelError, resolve_model
from agent.ollama import (
    MAX_MANIFEST_BYTES,
    MODEL_MEDIA_TYPE,
    find_model,
    list_models,
    models_folder,
)
from agent.runtime import ChatModel

SMOLLM = CATALOG[DEFAULT_CHAT_MODEL]
SMOLLM_SHA256 = SMOLLM.gguf_sha256 or ""  # pinned in the catalog: the blob's name without hashing


def write_blob(folder: Path, data: bytes, digest: str) -> Path:
    blob = folder / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return blob


def link_gguf(folder: Path, gguf: Path, digest: str) -> Path:
    """The GGUF as Ollama's blob: a hard link where the file system allows (as big as a model
    is, a copy per test would cost seconds), a copy otherwise."""
    blob = folder / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(gguf, blob)
    except OSError:
        shutil.copyfile(gguf, blob)
    return blob


def write_manifest(
    folder: Path, path: str, *, digest: str, size: int, text: str | None = None
) -> Path:
    """manifests/HOST/NAMESPACE/MODEL/TAG as Ollama writes it: a config, the model, a template."""
    manifest = folder / "manifests" / path
    manifest.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        text = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": "sha256:" + "c" * 64,
                    "size": 487,
                },
                "layers": [
                    {"mediaType": MODEL_MEDIA_TYPE, "digest": digest, "size": size},
                    {
                        "mediaType": "application/vnd.ollama.image.template",
                        "digest": "sha256:" + "d" * 64,
                        "size": 1615,
                    },
                ],
            }
        )
    manifest.write_text(text)
    return manifest


@pytest.fixture
def ollama(tmp_path: Path, models_dir: Path, monkeypatch) -> Path:
    """An Ollama models folder holding the default chat model under three names: the library's
    (with a tag and as latest), a user's namespace and another registry's, all one blob."""
    folder = tmp_path / "ollama-models"
    gguf = models_dir / SMOLLM.filename
    link_gguf(folder, gguf, SMOLLM_SHA256)
    size = gguf.stat().st_size
    for path in (
        "registry.ollama.ai/library/smollm2/135m",
        "registry.ollama.ai/library/smollm2/latest",
        "registry.ollama.ai/someone/tiny/q4",
        "hf.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/Q4_1",
    ):
        write_manifest(folder, path, digest=f"sha256:{SMOLLM_SHA256}", size=size)
    monkeypatch.setenv("OLLAMA_MODELS", str(folder))
    return folder


def test_lists_resolves_and_loads_the_blob_where_it_lies(ollama: Path, models_dir: Path):
    assert models_folder() == ollama
    blob = ollama / "blobs" / f"sha256-{SMOLLM_SHA256}"
    size = blob.stat().st_size
    listed = dict(list_models(ollama))
    assert sorted(listed) == [
        "hf.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1",
        "smollm2:135m",
        "smollm2:latest",
        "someone/tiny:q4",
    ]
    for found in listed.values():
        assert not isinstance(found, ModelError)
        assert (found.blob, found.size, found.sha256) == (blob, size, SMOLLM_SHA256)

    # With and without a tag (latest), a namespace, another host; the prefix is optional.
    assert find_model("smollm2:135m").name == "smollm2:135m"
    assert find_model("ollama:smollm2").name == "smollm2:latest"
    assert find_model("someone/tiny:q4").blob == blob
    assert find_model("hf.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1").blob == blob

    # No second copy: the node's models folder gains nothing, the path is Ollama's own file.
    before = sorted(p.name for p in models_dir.iterdir())
    path = resolve_model("ollama:smollm2:135m", models_dir, say=lambda line: None)
    assert path == blob and path.samefile(ollama / "blobs" / blob.name)
    assert sorted(p.name for p in models_dir.iterdir()) == before

    model = ChatModel(path, n_ctx=512)
    reply = "".join(model.stream([{"role": "user", "content": "Say hello."}], max_tokens=12))
    assert reply.strip()
    # The digest a receipt carries is computed from the file, and it is the blob's name.
    assert model.model_sha256 == SMOLLM_SHA256


def test_the_command_line_uses_and_lists_ollamas_models(cli, ollama: Path, env: dict[str, str]):
    env["OLLAMA_MODELS"] = str(ollama)
    cli("init")
    result = cli("models", "use", "chat", "ollama:smollm2")
    assert "chat model: ollama:smollm2:latest" in result.stdout  # kept as `ollama list` names it
    assert json.loads((cli.home / "config.json").read_text())["chat_model"] == (
        "ollama:smollm2:latest"
    )

    listing = cli("models").stdout
    assert f"Ollama's, in {ollama}" in listing
    # Each model's line: "* " (in use) or "  ", then its name.
    lines = {line[2:].split()[0]: line for line in listing.splitlines() if line[2:9] == "ollama:"}
    assert lines["ollama:smollm2:latest"].startswith("*")  # the one in use
    assert lines["ollama:someone/tiny:q4"].startswith(" ")
    assert SMOLLM_SHA256 in lines["ollama:smollm2:135m"]

    # Ollama has no such model: one clear line, the config unchanged.
    missing = cli("models", "use", "chat", "ollama:qwen2.5:3b", check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert (
        "Ollama has no qwen2.5:3b" in missing.stderr and "ollama pull qwen2.5:3b" in missing.stderr
    )
    climbing = cli("models", "use", "chat", "ollama:../../etc/passwd", check=False)
    assert climbing.returncode == 1 and "not an Ollama model name" in climbing.stderr
    assert json.loads((cli.home / "config.json").read_text())["chat_model"] == (
        "ollama:smollm2:latest"
    )

    # A broken manifest beside the good ones: listed as not usable, the listing goes on.
    write_manifest(ollama, "registry.ollama.ai/library/broken/latest", digest="x", size=1, text="{")
    listing = cli("models").stdout
    assert "ollama:broken:latest  not usable" in listing and "ollama:smollm2:135m" in listing

    # An Ollama folder without models says so.
    env["OLLAMA_MODELS"] = str(ollama.parent)
    assert "none yet (`ollama pull NAME`)" in cli("models").stdout

    # Without Ollama there is no section, and the configured model says it is gone.
    env["OLLAMA_MODELS"] = str(ollama.parent / "no-such-folder")
    listing = cli("models").stdout
    assert "Ollama's" not in listing.split("* ollama:")[0]
    assert "* ollama:smollm2:latest  (chat, not in Ollama's models folder)" in listing
    gone = cli("models", "use", "chat", "ollama:smollm2", check=False)
    assert gone.returncode == 1 and "is not a folder" in gone.stderr


# --- a folder that lies -----------------------------------------------------------------------


def refused(name: str, folder: Path) -> str:
    with pytest.raises(ModelError) as caught:
        find_model(name, folder)
    return str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "../../../etc/passwd",
        "smollm2:../../../../blobs/x",
        "a/../../b:c",
        "/etc/passwd",
        "a/b/c/d:e",
        "smollm2:a/b",
        "smollm2:",
        "",
        "smollm2\x00:x",
        "smollm2:latest\n",
    ],
)
def test_names_that_could_leave_the_folder_are_refused(ollama: Path, name: str):
    assert "not an Ollama model name" in refused(name, ollama)


def test_manifests_and_blobs_that_lie_are_refused(ollama: Path, tmp_path: Path):
    good = f"sha256:{SMOLLM_SHA256}"
    size = (ollama / "blobs" / f"sha256-{SMOLLM_SHA256}").stat().st_size

    def manifest(name: str, **kwargs) -> str:
        write_manifest(ollama, f"registry.ollama.ai/library/{name}/latest", **kwargs)
        return name

    # A digest that would name a file outside blobs/, or no sha256 at all.
    for digest in (
        "sha256:../../../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        SMOLLM_SHA256,
        f"sha256:{SMOLLM_SHA256}\n",
    ):
        assert "not sha256:<64 hex digits>" in refused(
            manifest("digest", digest=digest, size=size), ollama
        )
    assert "gives no size" in refused(manifest("nosize", digest=good, size=-1), ollama)

    # A blob in blobs/ that is a link to a file elsewhere (here a real GGUF: still refused).
    outside = tmp_path / "elsewhere.gguf"
    shutil.copyfile(ollama / "blobs" / f"sha256-{SMOLLM_SHA256}", outside)
    linked = "e" * 64
    (ollama / "blobs" / f"sha256-{linked}").symlink_to(outside)
    assert "links outside" in refused(
        manifest("linked", digest=f"sha256:{linked}", size=size), ollama
    )

    # Oversized, malformed, not a manifest, no model layer, two of them, a FIFO for a manifest.
    padding = " " * MAX_MANIFEST_BYTES
    big = json.dumps({"layers": [{"mediaType": MODEL_MEDIA_TYPE, "digest": good, "size": size}]})
    assert "over 1024 KiB" in refused(
        manifest("big", digest=good, size=size, text=big + padding), ollama
    )
    for text in ("{not json", "[]", '{"layers": {}}', "9" * 5000, "[" * 100_000):
        assert "is not a manifest" in refused(
            manifest("bad", digest=good, size=size, text=text), ollama
        )
    no_model = json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.tensor"}]})
    assert "no GGUF model layer" in refused(
        manifest("safetensors", digest=good, size=size, text=no_model), ollama
    )
    layer = {"mediaType": MODEL_MEDIA_TYPE, "digest": good, "size": size}
    two = json.dumps({"layers": [layer, layer]})
    assert "2 model layers" in refused(manifest("two", digest=good, size=size, text=two), ollama)
    fifo = ollama / "manifests/registry.ollama.ai/library/fifo/latest"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    assert "not a regular file" in refused("fifo", ollama)

    # The blob's size differs from the manifest's; a blob that is not a GGUF; no blob at all.
    assert "its manifest says" in refused(manifest("short", digest=good, size=size + 1), ollama)
    not_gguf = b"PK\x03\x04 a zip, not a model"
    write_blob(ollama, not_gguf, "f" * 64)
    assert "not a GGUF file" in refused(
        manifest("zip", digest="sha256:" + "f" * 64, size=len(not_gguf)), ollama
    )
    assert "missing from" in refused(
        manifest("gone", digest="sha256:" + "0" * 64, size=size), ollama
    )
    assert "Ollama has no nothing:here" in refused("nothing:here", ollama)

    # The listing reads every one of them without raising, and the good ones still resolve.
    listed = dict(list_models(ollama))
    broken = {name for name, found in listed.items() if isinstance(found, ModelError)}
    assert {"digest:latest", "linked:latest", "big:latest", "fifo:latest", "zip:latest"} <= broken
    assert not isinstance(listed["smollm2:135m"], ModelError)


def test_older_ollamas_blob_names_and_a_missing_folder(ollama: Path, monkeypatch, tmp_path: Path):
    # Ollama's early versions named blobs sha256:HEX.
    blob = ollama / "blobs" / f"sha256-{SMOLLM_SHA256}"
    blob.rename(ollama / "blobs" / f"sha256:{SMOLLM_SHA256}")
    assert find_model("smollm2:135m").blob.name == f"sha256:{SMOLLM_SHA256}"

    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "nowhere"))
    assert models_folder() is None  # OLLAMA_MODELS set: no other folder is looked at
    with pytest.raises(ModelError, match="is not a folder"):
        resolve_model("ollama:smollm2", tmp_path, say=lambda line: None)


def test_the_doctor_checks_an_ollama_blob_against_its_name(
    ollama: Path, models_dir: Path, tmp_path, monkeypatch
):
    from node import doctor
    from node.home import Home

    monkeypatch.setenv("FLURRY_MODELS", str(tmp_path / "models"))
    home = Home(tmp_path / "home")
    home.root.mkdir()
    home.keyring.write_text("{}")  # a home, as far as the doctor looks: it opens nothing sealed
    config = home.load_config()
    config.chat_model = "ollama:smollm2:135m"
    home.save_config(config)
    (check,) = [c for c in doctor.check_models(home) if c.name == "chat model"]
    assert check.status == "OK" and "matches its name in Ollama's manifest" in check.detail

    # A blob whose content is not what its name says (the same GGUF under another digest).
    wrong = "ab" * 32
    link_gguf(ollama, models_dir / SMOLLM.filename, wrong)
    size = (ollama / "blobs" / f"sha256-{wrong}").stat().st_size
    write_manifest(
        ollama, "registry.ollama.ai/library/renamed/latest", digest=f"sha256:{wrong}", size=size
    )
    config.chat_model = "ollama:renamed"
    home.save_config(config)
    (check,) = [c for c in doctor.check_models(home) if c.name == "chat model"]
    assert check.status == "FAIL" and "does NOT match" in check.detail
    assert "ollama pull" in check.fix

    config.chat_model = "ollama:nothing:here"
    home.save_config(config)
    (check,) = [c for c in doctor.check_models(home) if c.name == "chat model"]
    assert check.status == "FAIL" and "Ollama has no nothing:here" in check.detail
