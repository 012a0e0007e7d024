"""Receipts (issue 15): issued for a real generation of the default model (SmolLM2-135M, short
greedy runs), checked, verified by re-execution and by the fast prefill, refused when tampered
with, kept by the requester and verified from the command line."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

import pytest
from a2a.types import Artifact
from conftest import new_node
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.generation import Sampler, token_sha256
from agent.models import CATALOG, DEFAULT_CHAT_MODEL
from agent.receipts import (
    RECEIPT_KIND,
    ReceiptRejected,
    accept,
    carrier,
    check_signature,
    issue,
    parse,
    receipt_id,
    verify,
)
from agent.runtime import ChatModel
from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.jws import canonical_json, sign_json
from node.peers import RECEIPT_METADATA_KEY, carried_receipt

VECTORS = Path(__file__).parent / "vectors"
MESSAGES = [{"role": "user", "content": "Name three colours."}]


def _did(key: Ed25519PrivateKey) -> str:
    return did_key_from_ed25519_public(key.public_key().public_bytes_raw())


@pytest.fixture(scope="module")
def model(models_dir: Path) -> ChatModel:
    return ChatModel(models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename, n_ctx=512, n_threads=1)


@pytest.fixture(scope="module")
def provider() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def requester() -> str:
    return _did(Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def made(model, provider, requester):
    """(receipt, generation) of one short greedy reply."""
    _, generation = model.generate_recorded(MESSAGES, max_tokens=16)
    return issue(provider, _did(provider), generation, requester), generation


def _resign(receipt: dict, key: Ed25519PrivateKey) -> dict:
    """``receipt`` signed again by ``key``: a provider that lies, with a valid signature."""
    body = {k: v for k, v in receipt.items() if k != "signatures"}
    return {**body, "signatures": [sign_json(body, key, verification_method_id(_did(key)))]}


def test_canonical_json_follows_the_rfc_8785_vectors():
    vectors = json.loads((VECTORS / "rfc8785.json").read_text())
    for bits, text in vectors["numbers"]:
        assert canonical_json(struct.unpack(">d", bytes.fromhex(bits))[0]).decode() == text, bits
    for bits in vectors["not_json"]:
        with pytest.raises(ValueError):
            canonical_json(struct.unpack(">d", bytes.fromhex(bits))[0])
    example = vectors["example"]
    assert canonical_json(json.loads(example["input"])).decode() == example["output"]


def test_a_receipt_holds_hashes_settings_and_the_signature_not_the_tokens(made, model, requester):
    receipt, generation = made
    assert check_signature(receipt) is receipt
    assert receipt["requester"] == requester
    assert receipt["model"]["sha256"] == model.model_sha256
    assert receipt["prompt"] == {
        "tokens": len(generation.prompt_tokens),
        "sha256": token_sha256(generation.prompt_tokens),
    }
    assert receipt["output"]["sha256"] == token_sha256(generation.output_tokens)
    assert receipt["settings"]["n_threads"] == 1 and receipt["sampler"]["chain"][-1] == "greedy"
    # The prompt (and its tokens) never appear: only their hash.
    text = json.dumps(receipt)
    assert "colours" not in text and str(list(generation.prompt_tokens))[1:-1] not in text
    assert model.prompt_tokens(MESSAGES) == list(generation.prompt_tokens)


def test_a_greedy_receipt_verifies_by_re_execution_and_by_the_fast_check(made, model):
    receipt, generation = made
    exact = verify(receipt, model, MESSAGES, list(generation.output_tokens))
    assert exact.verdict == "verified", exact
    fast = verify(
        receipt, model, list(generation.prompt_tokens), list(generation.output_tokens), fast=True
    )
    assert fast.verdict == "verified" and fast.method == "fast", fast


@pytest.mark.parametrize(
    "path, value",
    [
        (("output", "sha256"), "0" * 64),
        (("prompt", "sha256"), "0" * 64),
        (("model", "sha256"), "0" * 64),
        (("settings", "n_batch"), 8),
        (("sampler", "seed"), 1),
        (("requester",), "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
    ],
)
def test_a_changed_field_breaks_the_signature(made, model, path, value):
    receipt = copy.deepcopy(made[0])
    target = receipt
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    with pytest.raises(ReceiptRejected) as refused:
        verify(receipt, model, MESSAGES)
    assert refused.value.reason == "signature_invalid"


def test_a_stranger_s_malformed_receipt_is_refused_before_its_signature_is_read(made, model):
    receipt = made[0]
    with pytest.raises(ReceiptRejected, match="at most") as refused:
        check_signature({**receipt, "system_padding": "x" * 20_000})
    assert refused.value.reason == "too_large"
    bad = copy.deepcopy(receipt)
    bad["output"]["tokens"] = "16"
    with pytest.raises(ReceiptRejected, match=r"receipt\.output\.tokens") as refused:
        check_signature(bad)
    assert refused.value.reason == "malformed"
    with pytest.raises(ReceiptRejected) as refused:
        parse(b'{"type": "a", "type": "b"}')
    assert refused.value.reason == "not_json"
    with pytest.raises(ReceiptRejected) as refused:
        parse(b"[" * 100_000)
    assert refused.value.reason == "not_json"
    forged = _resign(receipt, Ed25519PrivateKey.generate())  # signed, but not by its issuer
    with pytest.raises(ReceiptRejected) as refused:
        check_signature(forged)
    assert refused.value.reason == "wrong_signer"
    with pytest.raises(ReceiptRejected) as refused:  # output tokens that are not the hashed ones
        verify(receipt, model, MESSAGES, [1, 2, 3])
    assert refused.value.reason == "output_tokens_differ"


def test_a_signed_lie_is_a_mismatch_at_the_first_changed_token(made, model, provider):
    receipt, generation = made
    tokens = list(generation.output_tokens)
    tokens[3] = model.llama.tokenize(b" banana", add_bos=False)[0]
    lie = copy.deepcopy(receipt)
    lie["output"]["sha256"] = token_sha256(tokens)
    lie = _resign(lie, provider)
    exact = verify(lie, model, MESSAGES, tokens)
    assert exact.verdict == "mismatch"
    assert exact.first_difference == {
        "index": 3,
        "receipt_token": tokens[3],
        "replay_token": generation.output_tokens[3],
    }
    fast = verify(lie, model, MESSAGES, tokens, fast=True)  # the screen fails; replay decides
    assert fast.verdict == "mismatch" and fast.first_difference == exact.first_difference
    assert fast.method == "fast, then re-execution"
    # Another prompt than the one the receipt hashes (a data answer's is private): no verdict
    # on the output, and not a mismatch.
    other = verify(receipt, model, [{"role": "user", "content": "Name three fruits."}])
    assert other.verdict == "inconclusive" and other.differences == ["prompt"]


def test_threads_and_batch_are_replayed_and_another_build_or_model_is_inconclusive(
    made, model, provider
):
    receipt, generation = made
    tokens = list(generation.output_tokens)
    other = copy.deepcopy(receipt)
    other["settings"].update(n_threads=2, n_threads_batch=2, n_batch=8, n_ubatch=8)
    assert verify(_resign(other, provider), model, MESSAGES, tokens).verdict == "verified"
    # Another llama.cpp build whose output differs from ours: not called a mismatch.
    built = copy.deepcopy(receipt)
    built["runtime"]["llama_cpp_build_sha256"] = "1" * 64
    tokens[2] = (tokens[2] + 1) % 1000
    built["output"]["sha256"] = token_sha256(tokens)
    verdict = verify(_resign(built, provider), model, MESSAGES, tokens)
    assert verdict.verdict == "inconclusive" and verdict.differences == [
        "runtime.llama_cpp_build_sha256"
    ]
    elsewhere = copy.deepcopy(receipt)
    elsewhere["model"]["sha256"] = "2" * 64
    assert verify(_resign(elsewhere, provider), model, MESSAGES).verdict == "inconclusive"


def test_a_sampled_receipt_replays_its_seeded_sampler(model, provider, requester):
    sampler = Sampler(temperature=0.9, seed=1234)
    _, generation = model.generate_recorded(MESSAGES, max_tokens=12, sampler=sampler)
    receipt = issue(provider, _did(provider), generation, requester)
    assert receipt["sampler"]["chain"][-1] == "dist"
    assert verify(receipt, model, MESSAGES, list(generation.output_tokens)).verdict == "verified"


def test_the_receipt_rides_an_a2a_artifact_and_only_the_right_one_is_kept(
    made, provider, requester, vault
):
    receipt, generation = made
    artifact = Artifact(name="answer")
    artifact.metadata.update({RECEIPT_METADATA_KEY: carrier(receipt, generation)})
    carried = carried_receipt([Artifact.FromString(artifact.SerializeToString())])
    assert carried == carrier(receipt, generation)
    issuer = _did(provider)
    with pytest.raises(ReceiptRejected) as refused:
        accept(
            vault,
            carried,
            issuer=issuer,
            requester=_did(Ed25519PrivateKey.generate()),
            messages=MESSAGES,
            answer="",
        )
    assert refused.value.reason == "wrong_requester"
    with pytest.raises(ReceiptRejected) as refused:
        accept(vault, carried, issuer=requester, requester=requester, messages=MESSAGES, answer="")
    assert refused.value.reason == "wrong_signer"
    assert vault.records(RECEIPT_KIND) == []  # nothing kept of a refused receipt
    rid = accept(vault, carried, issuer=issuer, requester=requester, messages=MESSAGES, answer="hi")
    assert rid == receipt_id(receipt)
    kept = vault.get_record(RECEIPT_KIND, rid)
    assert kept["output_tokens"] == list(generation.output_tokens) and kept["messages"] == MESSAGES


def test_the_command_line_lists_shows_and_verifies_a_kept_receipt(
    made, tmp_path, models_dir, provider, cli
):
    _, generation = made
    node = new_node(tmp_path, models_dir)
    try:
        receipt = issue(provider, _did(provider), generation, node.keys.node_did)
        rid = accept(
            node.vault,
            carrier(receipt, generation),
            issuer=_did(provider),
            requester=node.keys.node_did,
            messages=MESSAGES,
            answer="",
        )
    finally:
        node.close()
    assert rid[:16] in cli("receipts", "list").stdout
    assert json.loads(cli("receipts", "show", rid[:10]).stdout)["receipt"] == receipt
    verified = cli("receipts", "verify", rid[:12], "--json")
    assert json.loads(verified.stdout)["verdict"] == "verified"
    assert json.loads(cli("receipts", "list", "--json").stdout)["verdict"] == "verified"
    # A receipt file, its prompt in another file; a tampered one is refused with the reason.
    prompt = tmp_path / "prompt.json"
    prompt.write_text(json.dumps(MESSAGES))
    bad = copy.deepcopy(receipt)
    bad["output"]["tokens"] += 1
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(bad))
    refused = cli("receipts", "verify", str(path), "--prompt", str(prompt), check=False)
    assert refused.returncode == 1 and "signature_invalid" in refused.stderr
    path.write_text(json.dumps(receipt))
    assert cli("receipts", "verify", str(path), "--prompt", str(prompt)).stdout.startswith(
        "verified"
    )


def test_a_streamed_recorded_reply_is_the_generated_one_and_replays_when_cut_short(
    model, provider, requester
):
    """The answer path's token-exact stream (a peer's data answer) makes the same tokens as
    generate_recorded; cut short (one checked sentence was enough), what it generated still
    re-executes: a replay of that many tokens gives the same."""
    text, whole = model.generate_recorded(MESSAGES, max_tokens=16)
    reply = model.stream_recorded(MESSAGES, max_tokens=16)
    assert "".join(reply) == text and reply.generation.output_tokens == whole.output_tokens
    cut = model.stream_recorded(MESSAGES, max_tokens=16)
    pieces = iter(cut)
    next(pieces), next(pieces)
    cut.close()
    generation = cut.generation
    assert 2 <= len(generation.output_tokens) < len(whole.output_tokens)
    assert generation.output_tokens == whole.output_tokens[: len(generation.output_tokens)]
    salt = b"s" * 32
    receipt = issue(provider, _did(provider), generation, requester, answer="Red.", salt=salt)
    assert verify(receipt, model, MESSAGES).verdict == "inconclusive"  # no salt: not the issuer
    verdict = verify(receipt, model, list(generation.prompt_tokens), salt=salt)
    assert verdict.verdict == "verified", verdict
