"""The Contract Net market between real nodes on loopback (issue 18): A delegates a task, B
(granted "contract") bids by its policy and answers from its travel notes with the real model
(SmolLM2: the answer and its receipt are what is tested), C (no grant) refuses, signed; A
verifies and keeps the conversation, both balances move by the same amount, and a third
party verifies the export offline. Forged, replayed, late and mutated messages sent over HTTP
are refused with their code, and the seller keeps serving."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from conftest import Served, new_node

from agent import contract_net as cn
from agent import receipts
from agent.grants import Grant, Quota
from identity.did_key import verification_method_id
from identity.signing_client import signed_client
from node import contracts_seller, contracts_wire
from node.contracts_buyer import delegate
from node.ledger import Ledger
from node.node import Node
from node.owner import LocalOwner
from node.peers import find_peer

TASK = "Which airline are the Lisbon flights booked with?"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, models_dir) -> Iterator[tuple[Node, Node, Node]]:
    root = tmp_path_factory.mktemp("market")
    a = new_node(root / "a", models_dir)
    b = new_node(root / "b", models_dir, notes=True)
    c = new_node(root / "c", models_dir)
    yield a, b, c
    for n in (a, b, c):
        n.close()


@pytest.fixture(scope="module")
def served(nodes) -> Iterator[tuple[Served, Served, Served]]:
    a, b, c = nodes
    s = Served(a), Served(b), Served(c)
    b.grants.add(
        Grant(did=a.keys.node_did, allow=frozenset({"contract", "ask"}), tags=frozenset({"travel"}))
    )
    contracts_seller.set_policy(
        b,
        a.keys.node_did,
        {**contracts_seller.DEFAULT_POLICY, "fixed": 3, "per_1k_tokens": 4, "max_open": 20},
    )
    owner = LocalOwner(a)
    asyncio.run(owner.add_peer(s[1].url, "b"))
    asyncio.run(owner.add_peer(s[2].url, "c"))
    yield s
    for one in s:
        one.stop()


@pytest.fixture(scope="module")
def round_(nodes, served) -> dict:
    a = nodes[0]
    return asyncio.run(delegate(a, TASK, ["b", "c"], budget=50, deadline=30))


def test_the_card_declares_the_extension(served) -> None:
    import httpx

    card = httpx.get(served[1].url + "/.well-known/agent-card.json").json()
    uris = [e["uri"] for e in card["capabilities"]["extensions"]]
    assert contracts_wire.EXTENSION_URI in uris


def test_a_round_awards_the_granted_seller_and_verifies_its_result(nodes, round_) -> None:
    a, b, c = nodes
    assert round_["answers"] == {"b": "propose", "c": "refuse"}
    # B's price by its policy: 3 + ceil(4 × (len(task)//4 + 512) / 1000)
    price = contracts_seller.price_for(contracts_seller.policy_for(b, a.keys.node_did), TASK)
    assert price == 3 + -(-4 * (len(TASK) // 4 + 512) // 1000)
    assert round_["price"] == {"amount": price, "unit": "credits"}
    assert round_["winner_did"] == b.keys.node_did
    assert round_["state"] == "result"
    assert "TAP" in round_["text"]  # from B's travel notes
    assert round_["receipt"] is not None, (
        round_["text"],
        round_.get("error"),
    )  # the grounded answer's receipt, checked by the buyer
    assert "receipt_error" not in round_
    assert a.vault.get_record(receipts.RECEIPT_KIND, round_["receipt"]) is not None  # kept
    kept = contracts_wire.load(a.vault, "buyer", round_["conversation"])
    assert kept is not None and kept.outcome is not None
    assert [m.performative for m in kept.messages] == [
        "cfp",
        "cfp",
        *sorted(
            ["propose", "refuse"], key=lambda p: [m.performative for m in kept.messages].index(p)
        ),
        "accept",
        "result",
    ]
    sold = contracts_wire.load(b.vault, "seller", round_["conversation"])
    assert sold is not None and sold.outcome is not None
    assert sold.outcome.id == kept.outcome.id
    # C refused, signed ("not granted"), and keeps nothing of a stranger's call
    assert contracts_wire.load(c.vault, "seller", round_["conversation"]) is None
    assert "not granted" in kept.answered[c.keys.node_did]["reason"]
    assert kept.answered[c.keys.node_did].performative == "refuse"


def test_balances_are_equal_and_opposite_and_recomputed(nodes, round_) -> None:
    a, b, _ = nodes
    amount = round_["price"]["amount"]
    bought = contracts_wire.balances(a.vault)[b.keys.node_did]["credits"]
    sold = contracts_wire.balances(b.vault)[a.keys.node_did]["credits"]
    assert bought["spent"] >= amount and sold["earned"] >= amount
    assert bought["balance"] == -sold["balance"]
    assert contracts_wire.balances(a.vault) == contracts_wire.balances(a.vault)


def test_a_third_party_verifies_the_export(nodes, round_, cli, tmp_path) -> None:
    kept = contracts_wire.load(nodes[0].vault, "buyer", round_["conversation"])
    assert kept is not None
    path = tmp_path / "conversation.json"
    path.write_bytes(kept.export())
    result = cli("contracts", "verify", str(path), "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["outcome"] == "result"
    assert verdict["receipt"] == round_["receipt"]


# --- attacks over HTTP ---------------------------------------------------------------------


def _post(node: Node, url: str, text: str) -> tuple[int, dict]:
    keys = node.keys
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": "m1",
                "role": "ROLE_USER",
                "parts": [{"text": text}],
                "metadata": contracts_wire.METADATA,
            }
        },
    }
    with signed_client(
        keys.node_key, verification_method_id(keys.node_did), base_url=url, timeout=60
    ) as client:
        response = client.post("/a2a", json=body, headers={"A2A-Version": "1.0"})
    return response.status_code, response.json()


def _cfp(a: Node, b: Node, **change) -> dict:
    now = int(time.time())
    terms = {
        "task": TASK,
        "result_spec": "answer",
        "deadline": now + 30,
        "budget": {"amount": 50, "unit": "credits"},
    }
    return cn.make(
        "cfp",
        a.keys.node_key,
        a.keys.node_did,
        b.keys.node_did,
        cn.new_conversation_id(),
        terms,
        now=change.pop("now", now),
        **change,
    )


def test_a_forged_message_is_refused_and_the_node_keeps_serving(nodes, served) -> None:
    a, b, _ = nodes
    cfp = _cfp(a, b)
    cfp["task"] = "something else"  # mutated after signing
    status, problem = _post(a, served[1].url, contracts_wire.encode(cfp))
    assert status == 422 and problem["reason"] == "signature_invalid"
    status, answer = _post(a, served[1].url, contracts_wire.encode(_cfp(a, b)))
    assert status == 200, answer
    assert "propose" in json.dumps(answer)


def test_a_message_in_another_senders_name_is_refused(nodes, served) -> None:
    a, b, c = nodes
    cfp = _cfp(a, b)  # signed by A, sent over C's signed transport
    status, problem = _post(c, served[1].url, contracts_wire.encode(cfp))
    assert status == 422 and problem["reason"] == "wrong_sender"


def test_a_replayed_cfp_is_refused(nodes, served) -> None:
    a, b, _ = nodes
    text = contracts_wire.encode(_cfp(a, b))
    assert _post(a, served[1].url, text)[0] == 200
    status, problem = _post(a, served[1].url, text)
    assert status == 422 and problem["reason"] == "replayed"


def test_a_late_message_is_refused(nodes, served) -> None:
    a, b, _ = nodes
    old = int(time.time()) - 1000
    cfp = _cfp(a, b, now=old, ttl=10)
    status, problem = _post(a, served[1].url, contracts_wire.encode(cfp))
    assert status == 422 and problem["reason"] == "expired"


def test_not_json_and_an_oversized_message_are_refused(nodes, served) -> None:
    a, b, _ = nodes
    assert _post(a, served[1].url, "{not json")[1]["reason"] == "not_json"
    assert _post(a, served[1].url, "x" * (cn.MAX_MESSAGE_BYTES + 1))[1]["reason"] == "too_large"


def test_an_accept_from_a_peer_without_a_grant_is_refused(nodes, served) -> None:
    a, b, c = nodes
    cfp = _cfp(c, b)
    status, answer = _post(c, served[1].url, contracts_wire.encode(cfp))
    assert status == 200 and "not granted" in json.dumps(answer)
    fake = {**cfp}
    accept_for_nothing = cn.make(
        "accept",
        c.keys.node_key,
        c.keys.node_did,
        b.keys.node_did,
        cfp["conversation"],
        {"price": {"amount": 1, "unit": "credits"}},
        answering=fake,
        now=int(time.time()),
    )
    status, problem = _post(c, served[1].url, contracts_wire.encode(accept_for_nothing))
    assert status == 422 and problem["reason"] == "not_granted"


def test_the_command_line_delegates_lists_and_shows_balances(
    nodes, served, cli, tmp_path, models_dir
) -> None:
    """`flurry delegate --json`, `flurry contracts list --json`, `flurry usage --json` on a
    fourth node's home (closed here, opened by the command)."""
    _, b, _ = nodes
    d = new_node(tmp_path / "d", models_dir)
    d_did = d.keys.node_did
    asyncio.run(LocalOwner(d).add_peer(served[1].url, "b"))
    d.close()
    b.grants.add(Grant(did=d_did, allow=frozenset({"contract", "ask"}), tags=frozenset({"travel"})))
    home = str(tmp_path / "d" / "home")
    done = cli(
        "delegate",
        TASK,
        "--to",
        "b",
        "--budget",
        "50",
        "--deadline",
        "20s",
        "--json",
        FLURRY_HOME=home,
    )
    outcome = json.loads(done.stdout[done.stdout.index("{") :])
    assert outcome["state"] == "result" and outcome["winner"] == "b"
    listed = json.loads(cli("contracts", "list", "--json", FLURRY_HOME=home).stdout)
    assert [(r["conversation"], r["side"], r["state"]) for r in listed] == [
        (outcome["conversation"], "buyer", "result")
    ]
    usage = json.loads(cli("usage", "--json", FLURRY_HOME=home).stdout)
    assert usage["balances"] == {
        b.keys.node_did: {
            "credits": {
                "earned": 0,
                "spent": outcome["price"]["amount"],
                "balance": -outcome["price"]["amount"],
            }
        }
    }
    # too low a budget: B refuses by its policy, signed, and nothing is awarded
    low = cli(
        "delegate",
        TASK,
        "--to",
        "b",
        "--budget",
        "1",
        "--deadline",
        "20s",
        "--json",
        FLURRY_HOME=home,
    )
    refused = json.loads(low.stdout[low.stdout.index("{") :])
    assert refused["answers"] == {"b": "refuse"} and refused["winner"] is None
    # --pick ask: the owner chooses by number at the terminal
    asked = cli(
        "delegate",
        TASK,
        "--to",
        "b",
        "--budget",
        "50",
        "--deadline",
        "20s",
        "--pick",
        "ask",
        "--json",
        FLURRY_HOME=home,
        input="1\n",
    )
    assert "1. b: " in asked.stdout
    chosen = json.loads(asked.stdout[asked.stdout.index("{") :])
    assert chosen["winner"] == "b" and chosen["state"] == "result"


@pytest.fixture(scope="module")
def five(nodes, served, tmp_path_factory, models_dir) -> Iterator[dict]:
    """Five sellers for A: B (notes, the cheapest), C (no grant), D and E (granted, dearer; E
    the fastest), F (granted, but prices in tokens)."""
    a, b, c = nodes
    root = tmp_path_factory.mktemp("five")
    more = {name: new_node(root / name, models_dir) for name in ("d", "e", "f")}
    sellers = {name: Served(n) for name, n in more.items()}
    policies: dict[str, dict[str, object]] = {
        "d": {"fixed": 20},
        "e": {"fixed": 10, "expected_seconds": 10},
        "f": {"unit": "tokens"},
    }
    owner = LocalOwner(a)
    for name, n in more.items():
        n.grants.add(Grant(did=a.keys.node_did, allow=frozenset({"contract", "ask"})))
        contracts_seller.set_policy(
            n, a.keys.node_did, {**contracts_seller.DEFAULT_POLICY, **policies[name]}
        )
        asyncio.run(owner.add_peer(sellers[name].url, name))
    yield {"b": b, "c": c, **more}
    for name, n in more.items():
        sellers[name].stop()
        n.close()


def test_five_sellers_two_refuse_three_bid_the_cheapest_wins(nodes, five) -> None:
    a = nodes[0]
    outcome = asyncio.run(delegate(a, TASK, list(five), budget=50, deadline=30))
    assert outcome["answers"] == {
        "b": "propose",
        "c": "refuse",
        "d": "propose",
        "e": "propose",
        "f": "refuse",
    }
    assert [bid["peer"] for bid in outcome["bids"]] == ["b", "e", "d"]  # by price
    assert outcome["winner"] == "b" and outcome["state"] == "result"
    assert "TAP" in outcome["text"] and outcome["receipt"] is not None
    for loser in ("d", "e"):  # each kept its side, ended by the buyer's signed reject
        kept = contracts_wire.load(five[loser].vault, "seller", outcome["conversation"])
        assert kept is not None
        assert [m.performative for m in kept.messages] == ["cfp", "propose", "reject"]
    refused = contracts_wire.load(five["f"].vault, "seller", outcome["conversation"])
    assert refused is not None and "unit" in refused.messages[-1]["reason"]
    mine = contracts_wire.load(a.vault, "buyer", outcome["conversation"])
    assert mine is not None
    assert sorted(m.performative for m in mine.messages) == sorted(
        ["cfp"] * 5 + ["propose"] * 3 + ["refuse"] * 2 + ["reject"] * 2 + ["accept", "result"]
    )


def test_fastest_picks_the_shortest_expected_time(nodes, five) -> None:
    outcome = asyncio.run(
        delegate(nodes[0], TASK, ["b", "d", "e"], budget=50, deadline=30, pick="fastest")
    )
    assert outcome["winner"] == "e" and outcome["state"] == "result"


def test_ask_lets_the_owner_choose_or_award_nobody(nodes, five) -> None:
    seen: list[list[str]] = []

    def nobody(proposals: list) -> int | None:
        seen.append(sorted(p.sender for p in proposals))
        return None

    outcome = asyncio.run(
        delegate(nodes[0], TASK, ["d", "e"], budget=50, deadline=30, pick="ask", choose=nobody)
    )
    assert seen == [sorted([five["d"].keys.node_did, five["e"].keys.node_did])]
    assert outcome["winner"] is None and outcome["state"] == "no award"
    kept = contracts_wire.load(five["d"].vault, "seller", outcome["conversation"])
    assert kept is not None and kept.messages[-1].performative == "reject"


def test_a_cfp_past_its_deadline_is_refused_over_http(nodes, served) -> None:
    a, b, _ = nodes
    now = int(time.time())
    terms = {
        "task": TASK,
        "result_spec": "answer",
        "deadline": now - 5,
        "budget": {"amount": 50, "unit": "credits"},
    }
    cfp = cn.make(
        "cfp",
        a.keys.node_key,
        a.keys.node_did,
        b.keys.node_did,
        cn.new_conversation_id(),
        terms,
        now=now - 10,
    )
    status, problem = _post(a, served[1].url, contracts_wire.encode(cfp))
    assert status == 422 and problem["reason"] == "late_bid"


def test_a_seller_refuses_past_its_open_contracts(nodes, served, five) -> None:
    """D's policy allows 2 open contracts with A (the default): a third call is refused, signed."""
    a, d = nodes[0], five["d"]
    pinned = find_peer(a.vault, "d")
    assert pinned is not None
    url = pinned.url
    answers = [_post(a, url, contracts_wire.encode(_cfp(a, d))) for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 200]
    texts = [json.dumps(answer) for _, answer in answers]
    assert ["propose" in t for t in texts] == [True, True, False]
    assert "busy" in texts[2]


def test_the_owner_reads_contracts_and_sets_a_policy_through_the_serving_node(
    nodes, served, round_
) -> None:
    """While `flurry serve` holds the home, the CLI goes through the owner API (node.owner)."""
    a, b, c = nodes
    keys = b.keys
    with signed_client(
        keys.owner_key, verification_method_id(keys.owner_did), base_url=served[1].url, timeout=60
    ) as owner:
        listed = owner.get("/api/owner/contracts").json()
        mine = [r for r in listed if r["conversation"] == round_["conversation"]]
        assert [(r["side"], r["state"]) for r in mine] == [("seller", "result")]
        bad = owner.put(
            "/api/owner/contracts/policy",
            json={"did": c.keys.node_did, "policy": {"fixed": -1}},
        )
        assert bad.status_code >= 400 and "policy" in bad.text
        policy = {**contracts_seller.DEFAULT_POLICY, "fixed": 7}
        good = owner.put(
            "/api/owner/contracts/policy", json={"did": c.keys.node_did, "policy": policy}
        )
        assert good.status_code == 200, good.text
    assert contracts_seller.policy_for(b, c.keys.node_did)["fixed"] == 7
    with signed_client(
        c.keys.node_key, verification_method_id(c.keys.node_did), base_url=served[1].url
    ) as stranger:
        assert stranger.get("/api/owner/contracts").status_code in (401, 403)


def test_the_tui_shows_the_contracts(nodes, served, round_) -> None:
    """Identity (F6) lists the contracts bought and sold, through the owner API."""
    from textual.widgets import DataTable

    from node.client import AsyncNodeClient
    from tui.app import FlurryApp

    a = nodes[0]

    async def go() -> list[str]:
        app = FlurryApp(AsyncNodeClient(served[0].url, a.keys), poll_seconds=0)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("f6")
            table = app.query_one("#contracts", DataTable)
            deadline = time.monotonic() + 30
            while not table.row_count:
                assert time.monotonic() < deadline, "no contracts shown"
                await pilot.pause(0.05)
            return [" ".join(map(str, table.get_row_at(r))) for r in range(table.row_count)]

    rows = asyncio.run(go())
    mine = [r for r in rows if round_["conversation"] in r]
    assert len(mine) == 1 and "buyer" in mine[0] and "result" in mine[0]
    assert f"{round_['price']['amount']} credits" in mine[0]


def _answer_of(reply: dict) -> dict:
    """The seller's contract message in a SendMessage reply (the answer artifact's text)."""
    task = reply["result"]["task"]
    texts = [p["text"] for a in task["artifacts"] for p in a["parts"] if "text" in p]
    return json.loads(texts[-1])


def test_awards_the_protocol_forbids_are_refused_over_http(nodes, served) -> None:
    """A's own bid from B, then: an award at another price, an award for a bid never made, a
    result sent to the seller; each refused with its code, the conversation left as it was."""
    a, b, _ = nodes
    cfp = _cfp(a, b)
    status, reply = _post(a, served[1].url, contracts_wire.encode(cfp))
    assert status == 200
    bid = _answer_of(reply)
    assert bid["performative"] == "propose" and bid["in_reply_to"] == cn.message_id(cfp)
    now = int(time.time())

    def accept(price: dict, answering: dict) -> dict:
        return cn.make(
            "accept",
            a.keys.node_key,
            a.keys.node_did,
            b.keys.node_did,
            cfp["conversation"],
            {"price": price},
            answering=answering,
            now=now,
        )

    cheaper = {**bid["price"], "amount": bid["price"]["amount"] - 1}
    status, problem = _post(a, served[1].url, contracts_wire.encode(accept(cheaper, bid)))
    assert status == 422 and problem["reason"] == "price_mismatch"
    never = {**bid, "nonce": "x" * 22}  # a bid B never made: another id
    status, problem = _post(a, served[1].url, contracts_wire.encode(accept(bid["price"], never)))
    assert status == 422 and problem["reason"] == "unknown_proposal"
    result = cn.make(
        "result",
        a.keys.node_key,
        a.keys.node_did,
        b.keys.node_did,
        cfp["conversation"],
        {"text": "done", "receipt": None},
        answering=bid,
        now=now,
    )
    status, problem = _post(a, served[1].url, contracts_wire.encode(result))
    assert status == 422 and problem["reason"] == "not_for_seller"
    kept = contracts_wire.load(b.vault, "seller", cfp["conversation"])
    assert kept is not None and kept.award is None and len(kept.messages) == 2


# --- watching and choosing through the serving node (the TUI's and the CLI's way) -----------


def _owner_client(node: Node, url: str):
    keys = node.keys
    return signed_client(
        keys.owner_key, verification_method_id(keys.owner_did), base_url=url, timeout=60
    )


def _until_phase(owner, conversation: str, phases: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 120
    while True:
        view = owner.post(
            "/api/owner/contracts/delegation", json={"conversation": conversation}
        ).json()
        if view["phase"] in phases:
            return view
        assert time.monotonic() < deadline, f"still {view['phase']}"
        time.sleep(0.1)


def test_the_owner_watches_the_bids_and_chooses_through_the_serving_node(
    nodes, served, five
) -> None:
    """Start a round with --pick ask on the serving node, see each bid as it comes, award the
    dearer E over the cheapest B; the round ends with E's verified result."""
    a = nodes[0]
    with _owner_client(a, served[0].url) as owner:
        started = owner.post(
            "/api/owner/contracts/delegations",
            json={
                "task": TASK,
                "peers": ["b", "e"],
                "budget": 50,
                "unit": "credits",
                "deadline": 30,
                "pick": "ask",
            },
        )
        assert started.status_code == 200, started.text
        cid = started.json()["conversation"]
        view = _until_phase(owner, cid, ("choosing",))
        assert {p: r["answer"] for p, r in view["peers"].items()} == {"b": "bid", "e": "bid"}
        assert [b["peer"] for b in view["bids"]] == ["b", "e"]  # by price: B 3+, E 10+
        # not a bidder: refused, and the round still waits for a real choice
        stray = owner.post(
            "/api/owner/contracts/delegation/award",
            json={"conversation": cid, "did": five["d"].keys.node_did},
        )
        assert stray.status_code >= 400 and "made no bid" in stray.text
        chosen = owner.post(
            "/api/owner/contracts/delegation/award",
            json={"conversation": cid, "did": five["e"].keys.node_did},
        )
        assert chosen.status_code == 200, chosen.text
        again = owner.post(
            "/api/owner/contracts/delegation/award", json={"conversation": cid, "did": None}
        )
        assert again.status_code >= 400 and "not waiting" in again.text
        done = _until_phase(owner, cid, ("done", "failed"))
        assert done["phase"] == "done", done["error"]
        assert done["outcome"]["winner"] == "e" and done["outcome"]["state"] == "result"
        assert done["peers"]["e"]["answer"] == "awarded"
        unknown = owner.post(
            "/api/owner/contracts/delegation", json={"conversation": "no-such-round"}
        )
        assert unknown.status_code >= 400 and "no delegation" in unknown.text
    kept = contracts_wire.load(nodes[1].vault, "seller", cid)
    assert kept is not None and kept.messages[-1].performative == "reject"


def test_the_command_line_chooses_in_a_round_the_serving_node_runs(nodes, five, cli) -> None:
    """`flurry delegate --pick ask` while `flurry serve` (a real process) holds the home: the
    round runs in the server, the terminal shows the bids and sends the owner's pick."""
    e = five["e"]
    cli("init")
    buyer = json.loads(cli("status", "--json").stdout)["node_did"]
    e.grants.add(Grant(did=buyer, allow=frozenset({"contract", "ask"})))
    pinned = find_peer(nodes[0].vault, "e")
    assert pinned is not None
    try:
        with cli.serving():
            cli("peers", "add", pinned.url, "--name", "e")
            asked = cli(
                "delegate",
                TASK,
                "--to",
                "e",
                "--deadline",
                "20s",
                "--pick",
                "ask",
                "--json",
                input="1\n",
            )
            # the seller's side through the server too: which kinds it sells to a peer
            sells = cli(
                "contracts", "policy", e.keys.node_did, "--kind", "infer", "--kind", "tool:x"
            )
            assert "infer, tool:x for 1 + 10 per 1k tokens" in sells.stdout
            bad = cli("contracts", "policy", e.keys.node_did, "--kind", "shell", check=False)
            assert bad.returncode == 1 and "kinds:" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        e.grants.remove(buyer)
    assert "1. e: " in asked.stdout
    chosen = json.loads(asked.stdout[asked.stdout.index("{") :])
    assert chosen["winner"] == "e" and chosen["state"] == "result"


def test_the_owner_watches_and_chooses_in_the_tui(nodes, served, five) -> None:
    """Identity (F6): N on the contracts, a task, the bids of every pinned peer as they come;
    Enter on E's row awards E, and the screen shows E's verified result."""
    from node.client import AsyncNodeClient
    from tui.app import FlurryApp
    from tui.keyed_table import KeyedTable
    from tui.screens import AskText, WatchDelegation

    a = nodes[0]

    async def until(pilot, condition, what: str) -> None:
        deadline = time.monotonic() + 120
        while not condition():
            assert time.monotonic() < deadline, what
            await pilot.pause(0.1)

    async def go() -> str:
        app = FlurryApp(AsyncNodeClient(served[0].url, a.keys), poll_seconds=0)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("f6")
            app.query_one("#contracts").focus()
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, AskText), "no task asked")
            await pilot.press(*TASK, "enter")
            await until(pilot, lambda: isinstance(app.screen, WatchDelegation), "no bids shown")
            screen = app.screen
            assert isinstance(screen, WatchDelegation)
            bids = screen.query_one("#bids", KeyedTable)
            await until(
                pilot,
                lambda: screen.view is not None and screen.view["phase"] == "choosing",
                "no choice asked",
            )
            assert screen.view is not None
            # D may be busy with the open bids of the tests before (its policy: 2 at once)
            assert {p for p, r in screen.view["peers"].items() if r["answer"] == "bid"} >= {
                "b",
                "e",
            }
            assert screen.view["peers"]["c"]["answer"] == "refused"
            bids.move_cursor(row=bids.get_row_index("e"))
            await pilot.press("enter")
            await until(
                pilot,
                lambda: screen.view is not None and screen.view["phase"] == "done",
                "no result",
            )
            return str(screen.query_one("#delegation-state").render())

    shown = asyncio.run(go())
    # E has no notes: its verified result says so (no model ran, so no receipt)
    assert "awarded to e for" in shown and ": result" in shown and "in your data" in shown


# --- the kinds of work, and the seller's limits ------------------------------------------------


def test_run_the_model_is_sold_under_its_own_grant(nodes, five) -> None:
    """kind "infer": E's model alone runs the task (no notes, no tools), metered in the ledger,
    its receipt in the result; without an "infer" grant E refuses, signed."""
    a, e = nodes[0], five["e"]
    before = e.grants.get(a.keys.node_did)
    assert before is not None
    policy = contracts_seller.policy_for(e, a.keys.node_did)
    contracts_seller.set_policy(e, a.keys.node_did, {**policy, "kinds": ["answer", "infer"]})
    try:
        refused = asyncio.run(
            delegate(a, "Say hello.", ["e"], budget=50, deadline=30, kind="infer")
        )
        assert refused["answers"] == {"e": "refuse"} and refused["winner"] is None
        kept = contracts_wire.load(e.vault, "seller", refused["conversation"])
        assert kept is not None and "allows infer" in kept.messages[-1]["reason"]
        e.grants.add(Grant(did=a.keys.node_did, allow=frozenset({"contract", "ask", "infer"})))
        outcome = asyncio.run(
            delegate(a, "Say hello.", ["e"], budget=50, deadline=30, kind="infer")
        )
    finally:
        e.grants.add(before)
        contracts_seller.set_policy(e, a.keys.node_did, policy)
    assert outcome["state"] == "result" and outcome["text"].strip()
    assert outcome["receipt"] is not None and "receipt_error" not in outcome
    served_entries = [
        entry
        for entry in Ledger(e.vault).entries()
        if entry.peer == a.keys.node_did and entry.channel == "contract"
    ]
    assert served_entries and served_entries[-1].completion_tokens > 0


def test_use_a_skill_sells_one_checked_tool_call(nodes, five, tmp_path) -> None:
    """kind "tool:read_file": E runs its tool with the buyer's arguments, checked against the
    tool's schema before any bid; not offered while the owner wants to approve each call, nor
    without a "tool:read_file" grant, nor with arguments the schema refuses."""
    from test_tool_pins import FilesServer

    a, e = nodes[0], five["e"]
    owner = LocalOwner(e)
    owner.install_mcp("files", FilesServer(tmp_path / "files").argv)
    owner.approve_skill("files", [])
    before = e.grants.get(a.keys.node_did)
    assert before is not None
    policy = contracts_seller.policy_for(e, a.keys.node_did)
    contracts_seller.set_policy(
        e, a.keys.node_did, {**policy, "kinds": ["answer", "tool:read_file"], "fixed": 4}
    )

    def round_(arguments: str) -> dict:
        return asyncio.run(
            delegate(a, arguments, ["e"], budget=50, deadline=30, kind="tool:read_file")
        )

    def reason(outcome: dict) -> str:
        kept = contracts_wire.load(e.vault, "seller", outcome["conversation"])
        assert kept is not None and kept.messages[-1].performative == "refuse"
        return kept.messages[-1]["reason"]

    try:
        assert "allows tool:read_file" in reason(round_('{"path": "a"}'))  # no grant for it
        e.grants.add(
            Grant(did=a.keys.node_did, allow=frozenset({"contract", "ask", "tool:read_file"}))
        )
        assert "approves each call" in reason(round_('{"path": "a"}'))  # the owner's rule: ask
        e.set_tool_policy("read_file", "allow")
        assert "JSON object" in reason(round_("read the file a"))
        assert "invalid call" in reason(round_('{"path": 7}'))
        outcome = round_('{"path": "a"}')
    finally:
        e.grants.add(before)
        contracts_seller.set_policy(e, a.keys.node_did, policy)
        owner.remove_skill("files")
    assert outcome["state"] == "result" and outcome["text"] == "contents of a"
    assert outcome["price"] == {"amount": 4, "unit": "credits"} and outcome["receipt"] is None
    mine = contracts_wire.load(a.vault, "buyer", outcome["conversation"])
    assert mine is not None and mine.award is not None
    [bid] = mine.proposals.values()
    assert bid["skills"] == ["files"]


def test_contract_calls_use_the_grants_quota(nodes, served) -> None:
    """Every contract message of a granted peer is one call of its quota: past it, 429."""
    a, _, c = nodes
    c.grants.add(
        Grant(did=a.keys.node_did, allow=frozenset({"contract"}), quota=Quota.parse("2/hour"))
    )
    try:
        statuses = [_post(a, served[2].url, contracts_wire.encode(_cfp(a, c)))[0] for _ in range(3)]
    finally:
        c.grants.remove(a.keys.node_did)
    assert statuses == [200, 200, 429]


def test_a_peer_cannot_fill_the_sellers_vault(nodes, five, monkeypatch) -> None:
    """Past MAX_KEPT_PER_PEER conversations with one buyer, the oldest that settle nothing go;
    the one whose bid still holds stays (it may still be awarded)."""
    a, d = nodes[0], five["d"]
    monkeypatch.setattr(contracts_seller, "MAX_KEPT_PER_PEER", 3)
    policy = contracts_seller.policy_for(d, a.keys.node_did)
    contracts_seller.set_policy(d, a.keys.node_did, {**policy, "max_open": 1})
    pinned = find_peer(a.vault, "d")
    assert pinned is not None
    try:
        for record in contracts_wire.kept(d.vault, side="seller", peer=a.keys.node_did):
            d.vault.delete_record("contract", f"seller:{record['conversation'].id}")
        sent = [_cfp(a, d) for _ in range(6)]
        answers = [_post(a, pinned.url, contracts_wire.encode(cfp)) for cfp in sent]
    finally:
        contracts_seller.set_policy(d, a.keys.node_did, policy)
    assert ["propose" in json.dumps(answer) for _, answer in answers] == [True] + [False] * 5
    left = [
        r["conversation"].id
        for r in contracts_wire.kept(d.vault, side="seller", peer=a.keys.node_did)
    ]
    assert len(left) == 3
    assert sent[0]["conversation"] in left  # the live bid
    assert sent[-1]["conversation"] in left  # the newest
