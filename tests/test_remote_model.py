"""A chat model on another box (issue 19): llama-cpp-python's own OpenAI-compatible server
(`python -m llama_cpp.server`, a real process on loopback, with an API key) serves the same
GGUF as "the other box". Through it: a grounded answer from the owner's data, a chat, a tool
call under the server's JSON schema, and an A2A answer for a peer (which stays on the local
model unless the owner allows the remote for peers). The server killed mid-answer: the next
question is answered by the local model, said in the answer's metadata; the server back:
used again. And what the owner types: `flurry models remote add / list`, `models use chat
remote:NAME`, `status`, `ask --json`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import PASSPHRASE, Served, free_port, new_node, write_corpus
from fastapi import Request  # resolved at module level: the strict server's handler takes one

from agent.grants import Grant
from agent.remote_model import FailoverChatModel, RemoteChatModel, RemoteUnavailable
from agent.tools import Tool, choose_tool
from node.errors import OwnerError
from node.home import Home
from node.node import Node
from node.owner import LocalOwner
from node.peering import send_to_peer

KEY = "sk-flurry-test-3141592653"
QUESTION = "Which airline are the Lisbon flights booked with?"


class OtherBox:
    """`python -m llama_cpp.server` on a loopback port, serving ``model`` behind ``KEY``."""

    def __init__(self, model: Path) -> None:
        self.model, self.port = model, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                # `python -m llama_cpp.server`, with the weights kept out of AMX buffers as the
                # node keeps them (agent.llama_loading): on an AMX CPU the server crashed too.
                "import runpy; from agent.llama_loading import keep_weights_off_amx; "
                "keep_weights_off_amx(); "
                "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)",
                "--model",
                str(self.model),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                "4096",
                "--api_key",
                KEY,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, "llama_cpp.server exited"
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1).status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not start"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture(scope="module")
def box(models_dir) -> Iterator[OtherBox]:
    other = OtherBox(models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf")
    other.start()
    yield other
    other.stop()


@pytest.fixture(scope="module")
def node(box, tmp_path_factory, models_dir) -> Iterator[Node]:
    """A node with notes whose chat model is remote:box (added, chosen, then opened again, as
    `flurry models remote add` and `flurry models use chat remote:box` leave a home)."""
    root = tmp_path_factory.mktemp("remote")
    first = new_node(root, models_dir, notes=True)
    LocalOwner(first).add_remote_model("box", box.url, "", KEY, False)
    config = first.home.load_config()
    config.chat_model = "remote:box"
    first.home.save_config(config)
    first.close()
    said: list[str] = []
    node = Node.open(Home(root / "home"), PASSPHRASE, say=said.append)
    assert isinstance(node.chat_model, FailoverChatModel)
    assert any("leave this box" in line for line in said)  # the first use says so
    yield node
    node.close()


def test_an_answer_from_the_owners_data_goes_to_the_other_box(node) -> None:
    model = node.chat_model
    assert isinstance(model, FailoverChatModel)
    conversation = node.conversation()
    answer = conversation.ask(QUESTION)
    text = "".join(answer)
    assert "TAP" in text and answer.grounded
    assert answer.model == "remote:box"
    # the server's own reply named the model it ran: the prompt went there
    assert model.remote.served_model is not None and model.remote.served_model.endswith(".gguf")
    # a second turn of the same chat, through the other box too
    again = conversation.ask("And when do they leave?")
    "".join(again)
    assert again.model == "remote:box"
    assert node.status()["prompts"]["to"] == "remote:box"


def test_a_tool_call_is_chosen_under_the_servers_json_schema(node) -> None:
    """The call is constrained by the server (llama_cpp.server takes json_object + schema,
    not OpenAI's json_schema: the model finds that out) and checked here all the same."""
    tools = [
        Tool(
            "add_note",
            "Adds a note to the owner's notes.",
            {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        )
    ]
    call = choose_tool(node.chat_model, "add a note: call the plumber on Monday", tools)
    model = node.chat_model
    assert isinstance(model, FailoverChatModel)
    assert model.last_used == "remote:box"
    assert model.remote._schema_style == "json_object"
    assert call is None or (call.tool == "add_note" and isinstance(call.arguments["text"], str))


def test_a_peers_question_stays_local_unless_the_owner_allows_the_remote(
    node, box, tmp_path, models_dir
) -> None:
    """Over A2A: by default the local model answers a peer (its receipt proves it); allowed,
    the other box answers, and no receipt can be made of that."""
    asker = new_node(tmp_path / "peer", models_dir)
    served = Served(node)
    try:
        node.grants.add(
            Grant(did=asker.keys.node_did, allow=frozenset({"ask"}), tags=frozenset({"travel"}))
        )
        asyncio.run(LocalOwner(asker).add_peer(served.url, "remote-node"))
        local = asyncio.run(send_to_peer(asker, "remote-node", QUESTION))
        assert "TAP" in local["text"] and "receipt_id" in local
        LocalOwner(node).add_remote_model("box", box.url, "", KEY, True)
        remote = asyncio.run(send_to_peer(asker, "remote-node", QUESTION))
        assert "TAP" in remote["text"] and "receipt_id" not in remote
    finally:
        LocalOwner(node).add_remote_model("box", box.url, "", KEY, False)
        served.stop()
        asker.close()


def test_down_mid_answer_the_local_model_answers_next_and_the_remote_comes_back(node, box) -> None:
    model = node.chat_model
    assert isinstance(model, FailoverChatModel)
    model.probe_seconds = 0.2  # the test's patience, not the node's (PROBE_SECONDS)
    long = [{"role": "user", "content": "Tell a long story about a lighthouse keeper."}]
    pieces = model.stream(long, max_tokens=400)
    next(pieces)
    box.stop()
    with pytest.raises(RemoteUnavailable, match="next one goes to the local model"):
        for _ in pieces:
            pass
    answer = node.conversation().ask(QUESTION)
    assert "TAP" in "".join(answer)
    assert answer.model is not None and answer.model.startswith("local (the remote remote:box")
    box.start()
    time.sleep(0.3)
    back = node.conversation().ask(QUESTION)
    "".join(back)
    assert back.model == "remote:box" and model.down is None


def test_the_key_is_sealed_and_sent(node, box) -> None:
    vault_bytes = Path(node.home.vault).read_bytes()
    assert KEY.encode() not in vault_bytes
    listed = LocalOwner(node).list_remote_models()
    assert [(r["name"], r["key"]) for r in listed] == [("box", "sealed")]
    from agent.remote_model import Remote

    keyless = RemoteChatModel(Remote("nokey", box.url))
    with pytest.raises(Exception, match="401"):
        list(keyless.stream([{"role": "user", "content": "hi"}], max_tokens=2))
    keyless.close()


@pytest.mark.parametrize(
    ("name", "url", "says"),
    [
        ("far", "http://192.0.2.7:8080", "plain http to another machine"),
        ("Bad Name", "https://box.example", "lowercase"),
        ("ftp", "ftp://box.example", "is not an http"),
    ],
)
def test_a_remote_that_would_leak_or_is_malformed_is_refused(node, name, url, says) -> None:
    with pytest.raises(OwnerError, match=says):
        LocalOwner(node).add_remote_model(name, url, "", None, False)


def test_the_remote_in_use_cannot_be_removed(node) -> None:
    with pytest.raises(OwnerError, match="in use"):
        LocalOwner(node).remove_remote_model("box")


def test_the_command_line(box, cli, tmp_path) -> None:
    cli("init")
    cli("add", str(write_corpus(tmp_path / "notes")))
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    added = cli("models", "remote", "add", "box", box.url, "--key-file", str(key_file)).stdout
    assert "remote:box" in added and "key sealed" in added
    assert "key sealed" in cli("models", "remote", "list").stdout
    missing = cli("models", "use", "chat", "remote:nope", check=False)
    assert missing.returncode == 1 and "no remote model" in missing.stderr
    used = cli("models", "use", "chat", "remote:box").stdout
    assert "will go to that server" in used
    status = cli("status").stdout
    assert (
        f"go to remote:box ({box.url})" in status and "peers' questions: the local model" in status
    )
    asked = json.loads(cli("ask", QUESTION, "--json").stdout.splitlines()[-1])
    assert "TAP" in asked["answer"] and asked["model"] == "remote:box"


def test_a_strict_server_gets_only_openais_fields(tmp_path) -> None:
    """A hosted API refuses fields it does not know (OpenAI answers 400); llama.cpp's
    `repeat_penalty` and `cache_prompt` are then left out, and its `json_schema` form is used.
    The strict server is a stand-in for such an API (the edge of the world: a service on the
    internet), a real HTTP server on loopback that checks each request as that API does."""
    import threading

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    known = {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "stream",
        "stream_options",
        "response_format",
    }
    seen: list[dict] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        body = await request.json()
        seen.append(body)
        unknown = set(body) - known
        if unknown:
            return JSONResponse({"error": f"Unrecognized request argument: {sorted(unknown)}"}, 400)
        if body.get("stream"):
            chunks = [
                {"choices": [{"delta": {"content": "o"}, "finish_reason": None}]},
                {"choices": [{"delta": {"content": "k"}, "finish_reason": "stop"}]},
                {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
            ]
            lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
            return StreamingResponse(iter(lines), media_type="text/event-stream")
        assert body["response_format"]["type"] == "json_schema"
        message = {"role": "assistant", "content": '{"text": "x"}'}
        return {
            "choices": [{"message": message, "finish_reason": "stop"}],
            "system_fingerprint": "fp_1",
        }

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        from agent.remote_model import Remote

        model = RemoteChatModel(Remote("strict", f"http://127.0.0.1:{port}"))
        assert "".join(model.stream([{"role": "user", "content": "hi"}])) == "ok"
        assert "repeat_penalty" in seen[0] and "repeat_penalty" not in seen[1]
        assert model.last_tokens_generated == 2 and model.last_finish_reason == "stop"
        "".join(model.stream([{"role": "user", "content": "again"}]))
        assert "cache_prompt" not in seen[-1]  # remembered: asked once, not every time
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        assert (
            model.complete([{"role": "user", "content": "x"}], schema=schema, max_tokens=8)
            == '{"text": "x"}'
        )
        assert model.system_fingerprint == "fp_1"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
