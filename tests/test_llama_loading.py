"""Models load so that they run on this CPU: on an AMX CPU, ggml's AMX weight buffers crashed
the first decode (agent.llama_loading). Whether this box has AMX is the world's business, so
the AMX case is also run with the CPU's answer replaced: said where."""

from __future__ import annotations

from pathlib import Path

import llama_cpp.llama_cpp as llama_cpp_c
import pytest

from agent import llama_loading
from agent.models import CATALOG, DEFAULT_CHAT_MODEL


@pytest.fixture
def restored_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the test installs, llama_cpp's default parameters are put back after it."""
    monkeypatch.setattr(
        llama_cpp_c, "llama_model_default_params", llama_cpp_c.llama_model_default_params
    )


def decodes(model_path: Path) -> bool:
    llm = llama_loading.load_llama(model_path=str(model_path), n_ctx=256, verbose=False)
    try:
        tokens = llm.tokenize(b"The garden needs water in the morning.")
        llm.eval(tokens)  # a prompt in one batch, then one token: where the AMX fault struck
        llm.eval([tokens[0]])
        return llm.n_tokens == len(tokens) + 1
    finally:
        llm.close()


def test_the_default_model_loads_and_decodes_on_this_cpu(models_dir: Path, restored_defaults):
    """On an AMX CPU this crashed the process before the guard (a 2-core cloud VM, every time)."""
    assert decodes(models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename)
    # The guard is on exactly where the CPU has AMX.
    on = llama_loading.cpu_has_amx()
    assert llama_loading.keep_weights_off_amx() is on
    assert llama_cpp_c.llama_model_default_params().use_extra_bufts is not on


def test_on_an_amx_cpu_the_weights_stay_out_of_amx_buffers(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, restored_defaults
):
    # The CPU's answer replaced: this box may have no AMX.
    monkeypatch.setattr(llama_loading, "cpu_has_amx", lambda: True)
    assert llama_loading.keep_weights_off_amx()
    wrapped = llama_cpp_c.llama_model_default_params
    assert llama_loading.keep_weights_off_amx()
    assert llama_cpp_c.llama_model_default_params is wrapped, "wrapped once, not again"
    assert llama_cpp_c.llama_model_default_params().use_extra_bufts is False
    assert decodes(models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename)


def test_without_amx_nothing_changes(monkeypatch: pytest.MonkeyPatch, restored_defaults):
    # The CPU's answer replaced: this box may have AMX.
    monkeypatch.setattr(llama_loading, "cpu_has_amx", lambda: False)
    before = llama_cpp_c.llama_model_default_params
    assert not llama_loading.keep_weights_off_amx()
    assert llama_cpp_c.llama_model_default_params is before
