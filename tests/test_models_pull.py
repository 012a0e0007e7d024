"""`flurry models pull` and `models recommend`, against a real HTTP server on 127.0.0.1 that
serves the default GGUF and misbehaves on purpose: it cuts the connection half-way, ignores
Range, stalls, redirects, announces a wrong digest, serves a web page instead of a model.
Nothing here leaves the machine: hf: sources are pointed at the loopback server through
FLURRY_HF_ENDPOINT. The pulled model is loaded and asked by the real llama.cpp runtime."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import PASSPHRASE

from agent.model_sources import check_url, hf_url
from agent.models import (
    CATALOG,
    DEFAULT_CHAT_MODEL,
    HUB_CATALOG,
    HubModel,
    ModelError,
    resolve_model,
    sha256_file,
)
from agent.pull import _folder_lock, pull
from agent.recommend import GB, Gpu, Machine, describe, parse_nvidia_smi, probe, recommend


@dataclass
class Route:
    body: bytes = b""
    ranges: bool = True  # honour Range requests
    cut_at: int | None = None  # close the connection after this offset, `cuts` times
    cuts: int = 1
    stall_at: int | None = None  # stop sending at this offset for `stall` seconds
    stall: float = 0.0
    redirect: str | None = None
    chunked: bool = False  # no Content-Length: the body's end is the connection's
    headers: dict[str, str] = field(default_factory=dict)
    etag: str = '"v1"'


@dataclass
class Hit:
    path: str
    range: str | None
    if_range: str | None
    status: int
    sent: int = 0


class FileServer:
    """A threaded http.server on loopback; every request is logged with the bytes it got."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[Hit] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hits(self, path: str) -> list[Hit]:
        return [h for h in self.log if h.path == path]

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        route = self.routes.get(h.path)
        hit = Hit(h.path, h.headers.get("Range"), h.headers.get("If-Range"), 404)
        self.log.append(hit)
        if route is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if route.redirect:
            hit.status = 302
            h.send_response(302)
            h.send_header("Location", route.redirect)
            for k, v in route.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data, start = route.body, 0
        wanted = hit.range if route.ranges and (hit.if_range in (None, route.etag)) else None
        if wanted:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                hit.status = 416
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        hit.status = 206 if wanted else 200
        h.send_response(hit.status)
        if wanted:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if route.ranges:
            h.send_header("Accept-Ranges", "bytes")
        h.send_header("ETag", route.etag)
        h.send_header("Content-Type", "application/octet-stream")
        if route.chunked:
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        offset = start
        try:
            while offset < len(data):
                end = min(len(data), offset + 64 * 1024)
                if route.cut_at is not None and route.cuts and offset < route.cut_at <= end:
                    end = route.cut_at
                h.wfile.write(data[offset:end])
                hit.sent += end - offset
                offset = end
                if route.cut_at is not None and route.cuts and offset == route.cut_at:
                    route.cuts -= 1
                    h.wfile.flush()
                    h.connection.shutdown(socket.SHUT_RDWR)  # the cable is pulled
                    h.close_connection = True
                    return
                if route.stall_at is not None and offset >= route.stall_at:
                    route.stall_at = None  # once: a later request is served at full speed
                    h.wfile.flush()
                    time.sleep(route.stall)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True  # the client hung up: `sent` says how far it got

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def gguf(models_dir: Path) -> tuple[bytes, str]:
    """The default chat model's bytes and sha256: a real GGUF the runtime can load."""
    data = (models_dir / CATALOG[DEFAULT_CHAT_MODEL].filename).read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def pulled_dir(tmp_path: Path, env: dict[str, str]) -> Path:
    """An empty models folder of the test's own, so pulls never touch the shared model cache
    (set in ``env``, which the ``flurry`` and ``cli`` fixtures both run with)."""
    folder = tmp_path / "pulled-models"
    env["FLURRY_MODELS"] = str(folder)
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _one_line_error(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- through the command line -----------------------------------------------------------------


def test_pull_prints_the_sha256_and_the_pulled_model_answers(
    cli, server, pulled_dir, gguf, monkeypatch
):
    # The pull command in process (CliRunner): its output and files are the subject; the server
    # holding the home is a real `flurry serve` process, and the pulled model is loaded by the real runtime.
    data, digest = gguf
    server.routes["/models/small-chat.gguf"] = Route(data)
    cli("init")
    with pytest.raises(ModelError, match=re.escape("run `flurry models pull qwen3-0.6b`")):
        resolve_model("qwen3-0.6b", pulled_dir)  # the hub is reached only by a pull, never on use
    with (
        cli.serving()
    ):  # a pull needs neither the passphrase nor the owner API: the models folder is not sealed
        result = cli("models", "pull", f"{server.url}/models/small-chat.gguf", FLURRY_PASSPHRASE="")
        assert f"sha256 {digest}" in result.stdout
        assert "use it: flurry models use chat small-chat.gguf" in result.stdout
        assert (
            "restart it to load the new model"
            in cli("models", "use", "chat", "small-chat.gguf").stdout
        )
    target = pulled_dir / "small-chat.gguf"
    assert sha256_file(target) == digest
    assert _files(pulled_dir) == [
        "small-chat.gguf",
        "small-chat.gguf.pull.json",
    ]  # no .part left behind
    assert [(h.range, h.status, h.sent) for h in server.hits("/models/small-chat.gguf")] == [
        (None, 200, len(data))
    ]

    listing = cli("models").stdout
    line = next(
        line for line in listing.splitlines() if "small-chat.gguf" in line and "sha256" in line
    )
    assert line.startswith("*") and digest in line and f"{len(data) / 1e6:.1f} MB" in line
    for model in HUB_CATALOG.values():
        assert model.name in listing and model.source in listing
    assert "unpinned" in listing

    # The node resolves the configured name to the pulled file and the real runtime answers with it.
    from node.home import Home
    from node.node import Node

    monkeypatch.setenv("FLURRY_MODELS", str(pulled_dir))
    monkeypatch.setenv("FLURRY_RUNTIME_DIR", cli.env["FLURRY_RUNTIME_DIR"])
    with Node.open(Home(cli.home), PASSPHRASE, say=lambda line: None) as node:
        assert node.chat_model.path == target
        reply = "".join(
            node.chat_model.stream([{"role": "user", "content": "Say hello."}], max_tokens=12)
        )
    assert reply.strip()


def test_an_interrupted_pull_resumes_with_only_the_rest(cli, server, pulled_dir, gguf):
    # In process (CliRunner): the command's error path and resume, against a real HTTP server.
    data, digest = gguf
    half = len(data) // 2
    server.routes["/m.gguf"] = Route(data, cut_at=half)
    error = _one_line_error(cli("models", "pull", f"{server.url}/m.gguf", check=False))
    assert "run the same pull again to resume" in error
    assert not (pulled_dir / "m.gguf").exists()  # never a half model under the usable name
    kept = (pulled_dir / ".m.gguf.part").stat().st_size
    assert kept == half

    result = cli("models", "pull", f"{server.url}/m.gguf")
    assert f"sha256 {digest}" in result.stdout and "resumed after" in result.stdout
    second = server.hits("/m.gguf")[1]
    assert (second.range, second.if_range, second.status) == (f"bytes={kept}-", '"v1"', 206)
    assert second.sent == len(data) - kept  # only the rest crossed the wire
    assert sha256_file(pulled_dir / "m.gguf") == digest
    assert _files(pulled_dir) == ["m.gguf", "m.gguf.pull.json"]


def test_a_wrong_sha256_refuses_and_leaves_nothing(cli, server, pulled_dir, gguf):
    # In process (CliRunner): an error path of the command line.
    data, digest = gguf
    server.routes["/m.gguf"] = Route(data)
    error = _one_line_error(
        cli("models", "pull", f"{server.url}/m.gguf", "--sha256", "ab" * 32, check=False)
    )
    assert "does not match the pinned sha256" in error and digest in error and "deleted" in error
    assert _files(pulled_dir) == []
    good = pull(f"{server.url}/m.gguf", pulled_dir, sha256=digest.upper(), say=lambda line: None)
    assert good.checked == "the pinned sha256" and good.sha256 == digest


def test_not_a_gguf_is_refused_before_anything_is_saved(cli, server, pulled_dir):
    # In process (CliRunner): an error path of the command line.
    page = b"<!doctype html><title>Sign in</title>" + b" " * (64 * 1024**2)
    server.routes["/m.gguf"] = Route(page, headers={})
    error = _one_line_error(cli("models", "pull", f"{server.url}/m.gguf", check=False))
    assert "is not a GGUF model" in error and "nothing saved" in error
    assert _files(pulled_dir) == []
    time.sleep(0.5)  # let the server's write fail on the closed connection
    assert server.hits("/m.gguf")[0].sent < len(page) // 2  # it stopped reading at the first bytes


def test_recommend_reads_this_machine(cli):
    # In process (CliRunner): the command's output is the subject.
    result = cli("models", "recommend")
    machine = probe()
    assert (
        f"This machine: {machine.cores} cores, {machine.ram_total / GB:.1f} GB memory"
        in result.stdout
    )
    for model in HUB_CATALOG.values():
        assert model.name in result.stdout
    _, best = recommend(machine)
    if best is None:
        assert "None of the catalog models" in result.stdout
    else:
        assert (
            f"flurry models pull {best.model.name} && flurry models use chat {best.model.name}"
            in result.stdout
        )


# --- in process: the same code, without a process start per call -------------------------------


def test_a_server_that_ignores_range_starts_over_cleanly(server, gguf, tmp_path):
    data, digest = gguf
    server.routes["/m.gguf"] = Route(data, ranges=False, cut_at=len(data) // 3)
    with pytest.raises(ModelError, match="run the same pull again to resume"):
        pull(f"{server.url}/m.gguf", tmp_path, say=lambda line: None)
    said = []
    got = pull(f"{server.url}/m.gguf", tmp_path, say=said.append)
    assert any("sent the whole file instead of the rest" in line for line in said)
    second = server.hits("/m.gguf")[1]
    assert (second.range, second.status, second.sent) == (
        f"bytes={len(data) // 3}-",
        200,
        len(data),
    )
    assert got.sha256 == digest == sha256_file(tmp_path / "m.gguf") and got.resumed_at == 0


def test_a_changed_file_is_not_glued_to_the_old_part(server, gguf, tmp_path):
    data, _ = gguf
    changed = data[:64] + bytes(b ^ 0xFF for b in data[64:4096]) + data[4096:]
    server.routes["/m.gguf"] = Route(data, cut_at=len(data) // 2)
    with pytest.raises(ModelError):
        pull(f"{server.url}/m.gguf", tmp_path, say=lambda line: None)
    server.routes["/m.gguf"] = Route(changed, etag='"v2"')  # the publisher replaced the file
    got = pull(f"{server.url}/m.gguf", tmp_path, say=lambda line: None)
    second = server.hits("/m.gguf")[1]
    assert (second.if_range, second.status) == (
        '"v1"',
        200,
    )  # If-Range no longer matches: the whole file
    assert got.sha256 == hashlib.sha256(changed).hexdigest() == sha256_file(tmp_path / "m.gguf")


def test_limits_are_checked_before_and_while_reading(server, gguf, tmp_path):
    data, _ = gguf
    server.routes["/big.gguf"] = Route(data)
    with pytest.raises(ModelError, match="over the 1.0 MB limit"):
        pull(f"{server.url}/big.gguf", tmp_path, max_bytes=1_000_000, say=lambda line: None)
    # Without a Content-Length the cap is enforced as the bytes arrive.
    server.routes["/endless.gguf"] = Route(data, chunked=True)
    with pytest.raises(ModelError, match="grew past the 1.0 MB limit"):
        pull(f"{server.url}/endless.gguf", tmp_path, max_bytes=1_000_000, say=lambda line: None)
    assert _files(tmp_path) == []
    time.sleep(0.5)  # let the server's writes fail on the closed connections
    assert all(h.sent < len(data) // 2 for h in server.log)


def test_a_stalled_server_times_out_and_the_pull_resumes(server, gguf, tmp_path):
    data, digest = gguf
    server.routes["/slow.gguf"] = Route(data, stall_at=1024 * 1024, stall=5)
    with pytest.raises(ModelError, match="stopped answering .* run the same pull again to resume"):
        pull(f"{server.url}/slow.gguf", tmp_path, timeout=1, say=lambda line: None)
    assert (tmp_path / ".slow.gguf.part").stat().st_size >= 1024 * 1024
    assert pull(f"{server.url}/slow.gguf", tmp_path, say=lambda line: None).sha256 == digest


def test_bad_sources_and_names_are_refused(server, gguf, tmp_path):
    server.routes["/x/evil.gguf"] = Route(gguf[0])
    for source, expected in [
        ("http://example.org/m.gguf", "only https://"),
        ("ftp://127.0.0.1/m.gguf", "only https://"),
        (f"{server.url}/x/..%2F..%2Fevil.gguf", "not a usable model file name"),
        (f"{server.url}/missing.gguf", "answered 404"),
        ("hf:just-a-name", "expected hf:OWNER/REPO/FILE.gguf"),
        ("hf:owner/../x.gguf", "expected hf:OWNER/REPO/FILE.gguf"),
        ("no-such-model", "give an https:// URL"),
    ]:
        with pytest.raises(ModelError, match=re.escape(expected)):
            pull(source, tmp_path, say=lambda line: None)
    for name in ("../evil.gguf", "model.bin", ".hidden.gguf", CATALOG[DEFAULT_CHAT_MODEL].filename):
        with pytest.raises(ModelError, match="--name"):
            pull(f"{server.url}/x/evil.gguf", tmp_path, name=name, say=lambda line: None)
    with pytest.raises(ModelError, match="64 hexadecimal digits"):
        pull(f"{server.url}/x/evil.gguf", tmp_path, sha256="abc", say=lambda line: None)
    assert _files(tmp_path) == []
    assert [h.path for h in server.log] == [
        "/missing.gguf"
    ]  # the refused ones never reached the server


def test_hf_sources_map_to_the_hub_file_url(monkeypatch):
    monkeypatch.delenv("FLURRY_HF_ENDPOINT", raising=False)
    assert hf_url("Qwen/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q8_0.gguf") == (
        "https://huggingface.co/Qwen/Qwen3-0.6B-GGUF/resolve/main/Qwen3-0.6B-Q8_0.gguf"
    )
    assert hf_url("o/r/sub/f.gguf@v1.2") == "https://huggingface.co/o/r/resolve/v1.2/sub/f.gguf"
    assert hf_url("o/r/f.gguf@").endswith("/o/r/resolve/main/f.gguf")  # an empty revision is main
    for bad in ("o/r", "o/r/f.gguf@a/b", "o/r/../f.gguf", "o r/x/f.gguf", "o/r/f.gguf@.."):
        with pytest.raises(ModelError, match="expected hf:OWNER/REPO/FILE.gguf"):
            hf_url(bad)


def test_an_hf_catalog_pull_follows_the_hub_redirect_and_checks_pins(
    server, gguf, tmp_path, monkeypatch
):
    data, digest = gguf
    monkeypatch.setenv("FLURRY_HF_ENDPOINT", server.url)
    # The hub answers a file URL with a redirect to its storage and announces the sha256 there.
    hub = "/acme/tiny-GGUF/resolve/main/tiny-chat.gguf"
    server.routes[hub] = Route(
        redirect="/storage/blob-1",
        headers={"X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(data))},
    )
    server.routes["/storage/blob-1"] = Route(data)
    pinned = HubModel(
        "tiny", "hf:acme/tiny-GGUF/tiny-chat.gguf", "a test entry", 0.1, 0.5, 2048, 1, sha256=digest
    )
    monkeypatch.setitem(HUB_CATALOG, "tiny", pinned)
    got = pull("tiny", tmp_path, say=lambda line: None)
    assert (
        got.sha256 == digest and got.checked == "the pinned sha256, the digest the server announced"
    )
    assert [h.path for h in server.log] == [hub, "/storage/blob-1"]

    # A revision maps to its own path; a wrong announced digest is refused and nothing stays.
    server.routes["/acme/tiny-GGUF/resolve/v2/other.gguf"] = Route(
        redirect="/storage/blob-1", headers={"X-Linked-Etag": '"' + "0" * 64 + '"'}
    )
    with pytest.raises(ModelError, match="does not match the digest the server announced"):
        pull("hf:acme/tiny-GGUF/other.gguf@v2", tmp_path, say=lambda line: None)
    monkeypatch.setitem(
        HUB_CATALOG,
        "tiny-wrong",
        HubModel(
            "tiny-wrong",
            "hf:acme/tiny-GGUF/tiny-chat2.gguf",
            "",
            0.1,
            0.5,
            2048,
            1,
            sha256="1" * 64,
        ),
    )
    server.routes["/acme/tiny-GGUF/resolve/main/tiny-chat2.gguf"] = Route(data)
    with pytest.raises(ModelError, match="does not match the pinned sha256"):
        pull("tiny-wrong", tmp_path, say=lambda line: None)
    assert _files(tmp_path) == ["tiny-chat.gguf", "tiny-chat.gguf.pull.json"]


def test_redirects_stay_on_https_or_on_this_machine(server, gguf, tmp_path):
    check_url("https://example.org/m.gguf")
    check_url("http://127.0.0.1:9/m.gguf")
    check_url("http://[::1]:9/m.gguf")
    check_url("https://cdn.example.org/x", came_from="https://huggingface.co/a")
    for url, came_from in [
        ("http://example.org/m.gguf", "https://huggingface.co/a"),  # downgraded to plain http
        ("http://127.0.0.1:8765/api", "https://evil.example/a"),  # a remote server pointing inwards
        ("file:///etc/passwd", "https://evil.example/a"),
    ]:
        with pytest.raises(ModelError):
            check_url(url, came_from=came_from)
    server.routes["/loop"] = Route(redirect="/loop")
    with pytest.raises(ModelError, match="more than 10 redirects"):
        pull(f"{server.url}/loop", tmp_path, name="loop.gguf", say=lambda line: None)
    server.routes["/away"] = Route(redirect="http://example.org/m.gguf")
    with pytest.raises(ModelError, match="only https://"):
        pull(f"{server.url}/away", tmp_path, name="away.gguf", say=lambda line: None)
    assert _files(tmp_path) == []


def test_two_pulls_into_one_folder_are_refused(server, gguf, tmp_path):
    server.routes["/m.gguf"] = Route(gguf[0])
    with _folder_lock(tmp_path), pytest.raises(ModelError, match="another pull is writing"):
        pull(f"{server.url}/m.gguf", tmp_path, say=lambda line: None)
    assert pull(f"{server.url}/m.gguf", tmp_path, say=lambda line: None).sha256 == gguf[1]
    again = pull(f"{server.url}/m.gguf", tmp_path, say=lambda line: None)
    assert again.already and again.sha256 == gguf[1]
    assert len(server.hits("/m.gguf")) == 1  # nothing downloaded twice


def test_recommend_follows_memory_cores_and_gpu():
    small = Machine(cores=2, ram_total=3 * GB, ram_available=2 * GB, gpu_offload=False)
    fits, best = recommend(small)
    verdicts = {f.model.name: f.verdict for f in fits}
    assert verdicts["qwen3-0.6b"] == "good" and verdicts["llama-3.2-3b-instruct"] == "tight"
    assert best.model.name == "qwen2.5-1.5b-instruct"
    assert recommend(Machine(1, 1 * GB, 1 * GB // 2, False))[1] is None
    assert all(f.verdict == "no" for f in recommend(Machine(1, GB // 2, GB // 4, False))[0])

    gpu = (Gpu("NVIDIA H200", 141 * GB, 140 * GB),)
    fits, best = recommend(Machine(2, 8 * GB, 6 * GB, gpu_offload=True, gpus=gpu))
    assert {f.verdict for f in fits} == {"gpu"} and best.model.name == "qwen2.5-3b-instruct"
    cpu_build = Machine(2, 8 * GB, 6 * GB, gpu_offload=False, gpus=gpu)
    assert "gpu" not in {f.verdict for f in recommend(cpu_build)[0]}
    assert "cannot offload" in describe(cpu_build)


def test_nvidia_smi_lines_are_read_in_mib():
    # The layout of `nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits`.
    text = "NVIDIA H200, 143771, 143254\nNVIDIA GeForce RTX 3060, 12288, [N/A]\nNo devices were found\n"
    assert parse_nvidia_smi(text) == (Gpu("NVIDIA H200", 143771 * 1024**2, 143254 * 1024**2),)


def test_max_size_reads_as_people_write_it():
    import click

    from node.cli import _parse_size

    assert [_parse_size(s) for s in ("64G", "800M", "1.5GB", "4096", "2 t")] == [
        64e9,
        800e6,
        1.5e9,
        4096,
        2e12,
    ]
    for bad in ("lots", "-1G", "1X", ""):
        with pytest.raises(click.BadParameter):
            _parse_size(bad)
