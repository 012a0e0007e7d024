"""Issue 12, item 5: a node signed an agent card whose endpoint came from the request's Host,
so an attacker fetched the victim's card with its own Host, served it, and `peers add` pinned
the victim's DID at the attacker's URL (questions went to the attacker, its forged answers
came back in the victim's name)."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time

import httpx
import pytest
from conftest import PASSPHRASE, free_port, new_node

from node.home import Home
from node.node import Node
from node.owner import LocalOwner, OwnerError
from node.peers import CARD_PATH, list_peers, verify_card

from .conftest import serve


@pytest.fixture(scope="module")
def victim(node):
    served = serve(node)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def other_node(tmp_path_factory, models_dir):
    node = new_node(tmp_path_factory.mktemp("adder"), models_dir)
    yield node
    node.close()


def _endpoints(card: dict) -> list[str]:
    return [interface["url"] for interface in card["supportedInterfaces"]]


class _Replayer(http.server.BaseHTTPRequestHandler):
    card = b""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.card)))
        self.end_headers()
        self.wfile.write(self.card)

    def log_message(self, *args):
        pass


def test_a_card_fetched_under_another_host_cannot_be_pinned_at_that_host(victim, other_node):
    attacker_port = free_port()
    attacker_url = f"http://127.0.0.1:{attacker_port}"
    # The attacker asks the victim for its card as if the victim lived at the attacker's URL.
    stolen = httpx.get(victim.url + CARD_PATH, headers={"Host": f"127.0.0.1:{attacker_port}"})
    assert stolen.status_code == 200
    assert _endpoints(stolen.json()) == [victim.url + "/a2a"]  # the Host is not believed
    assert verify_card(stolen.json()) == victim.node.keys.node_did

    _Replayer.card = stolen.content
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", attacker_port), _Replayer)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        with pytest.raises(OwnerError, match="names no JSON-RPC endpoint on"):
            asyncio.run(LocalOwner(other_node).add_peer(attacker_url, "victim?"))
        assert list_peers(other_node.vault) == []
        # The victim's own URL still works.
        added = asyncio.run(LocalOwner(other_node).add_peer(victim.url, "victim"))
        assert added["did"] == victim.node.keys.node_did and added["url"] == victim.url
    finally:
        attacker.shutdown()
        attacker.server_close()


def test_the_card_is_the_same_bytes_on_every_fetch_with_an_etag(victim):
    first = httpx.get(victim.url + CARD_PATH)
    second = httpx.get(victim.url + CARD_PATH, headers={"Host": "evil.example"})
    assert first.content == second.content
    etag = first.headers["etag"]
    assert etag == second.headers["etag"] and etag.startswith('"')
    assert "max-age" in first.headers["cache-control"]
    again = httpx.get(victim.url + CARD_PATH, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag


def test_the_card_names_every_configured_origin_and_no_other(node):
    origins = ["https://node.example", "http://127.0.0.1:9"]
    served = serve(node, public_origins=origins)
    try:
        card = httpx.get(served.url + CARD_PATH).json()
        assert _endpoints(card) == [origin + "/a2a" for origin in origins]
    finally:
        served.stop()


def test_flurry_serve_names_its_public_url_in_the_card(flurry):
    Node.init(Home(flurry.home), PASSPHRASE)
    port = free_port()
    server = flurry.popen("serve", "--port", str(port), "--public-url", "https://node.example/")
    try:
        deadline = time.monotonic() + 60
        while not (flurry.home / "serve.json").exists():
            assert server.poll() is None and time.monotonic() < deadline, (
                "flurry serve did not start"
            )
            time.sleep(0.2)
        card = httpx.get(f"http://127.0.0.1:{port}{CARD_PATH}").json()
        assert _endpoints(card) == ["https://node.example/a2a"]
    finally:
        server.terminate()
        server.wait(timeout=30)
