"""Issue 12, items 9 and 10 (the parts on this branch): 500s for strangers from odd JSON,
files the node creates readable by others, /v1/models without a valid token, NIP-98 ignored
on /pod, a non-UTF-8 file name aborting a whole `flurry add`, and 401s without WWW-Authenticate."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import httpx
import pytest

from identity.nostr_http_auth import http_auth_header
from identity.nostr_key import NostrKey
from node.nostr_peers import PEER_KEY_KIND
from store.ingest import NOT_UTF8

from .conftest import Someone

# --- JSON a stranger sends ----------------------------------------------------------------

HOSTILE_JSON = {
    "nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "an infinite k": b'{"question": "hi", "k": 1e999}',
    "NaN": b'{"question": "hi", "k": NaN}',
    "deep but parseable": b'{"question": "hi", "x": ' + b"[" * 500 + b"]" * 500 + b"}",
}


@pytest.mark.parametrize("name", HOSTILE_JSON)
def test_hostile_json_from_a_stranger_is_a_400_not_a_500(served, name):
    with Someone().client(served.url) as stranger:
        for path in ("/api/ask", "/a2a"):
            response = stranger.post(
                path, content=HOSTILE_JSON[name], headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, (path, response.status_code, response.text[:200])
            assert response.headers["content-type"] == "application/problem+json"


def test_hostile_json_to_the_openai_endpoint_is_a_400(served, owner):
    token = owner.post(
        "/api/owner/tokens", json={"name": "hostile-json", "allow": ["chat"]}
    ).json()["token"]
    for body in HOSTILE_JSON.values():
        response = httpx.post(
            served.url + "/v1/chat/completions",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text[:200]


# --- /v1/models ----------------------------------------------------------------------------


def test_v1_models_needs_a_valid_token(served, owner):
    models = served.url + "/v1/models"
    for headers in (
        {},
        {"Authorization": "Bearer flurry_not-a-token"},
        {"Authorization": "Bearer anything"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ):
        response = httpx.get(models, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer ")
    token = owner.post("/api/owner/tokens", json={"name": "models", "allow": ["chat"]}).json()[
        "token"
    ]
    assert (
        httpx.get(models, headers={"Authorization": f"Bearer {token}"}).json()["data"][0]["id"]
        == "flurry"
    )


# --- WWW-Authenticate on every 401 -------------------------------------------------------


def test_every_401_names_the_schemes_the_node_accepts(served, owner):
    owner.put(
        "/pod/private/note.txt", content=b"mine", headers={"Content-Type": "text/plain"}
    ).raise_for_status()
    refusals = [
        httpx.get(served.url + "/api/whoami"),  # unsigned
        httpx.post(served.url + "/a2a", json={}),
        httpx.get(served.url + "/pod/private/note.txt"),  # not public
        httpx.put(served.url + "/pod/private/x.txt", content=b"x"),
        httpx.get(
            served.url + "/api/whoami",
            headers={"Signature-Input": "sig1=()", "Signature": "sig1=:AA==:"},
        ),
    ]
    for response in refusals:
        assert response.status_code == 401, response.request.url
        challenges = response.headers.get_list("www-authenticate")
        assert any(c.startswith("Signature ") and 'alg="ed25519"' in c for c in challenges), (
            challenges
        )
        assert any(c.startswith("Nostr ") for c in challenges), challenges


# --- NIP-98 on the pod ---------------------------------------------------------------------


def test_nip98_is_a_signature_on_the_pod_too(served, node, owner):
    peer, nostr = Someone(), NostrKey.from_node_seed(os.urandom(32))
    node.vault.put_record(
        PEER_KEY_KIND, nostr.public_key_hex, {"did": peer.did, "pubkey": nostr.public_key_hex}
    )
    node.grants.set_pod_modes(peer.did, "/pod/shared/", ["read"])
    try:
        owner.put(
            "/pod/shared/plan.txt", content=b"the plan", headers={"Content-Type": "text/plain"}
        ).raise_for_status()
        url = served.url + "/pod/shared/plan.txt"
        response = httpx.get(url, headers={"Authorization": http_auth_header(nostr, "GET", url)})
        assert response.status_code == 200 and response.content == b"the plan"
        # Not a silent downgrade to unsigned: a NIP-98 header that does not hold is a 401.
        stranger = NostrKey.from_node_seed(os.urandom(32))
        refused = httpx.get(url, headers={"Authorization": http_auth_header(stranger, "GET", url)})
        assert refused.status_code == 401 and refused.json()["reason"] == "unsupported_keyid"
    finally:
        node.grants.set_pod_modes(peer.did, "/pod/shared/", None)
        node.vault.delete_record(PEER_KEY_KIND, nostr.public_key_hex)


# --- files on disk ------------------------------------------------------------------------


def test_every_file_the_node_writes_is_the_owners_alone(tmp_path, env, flurry):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("# Plan\n\nThe boat leaves at nine.\n")

    def run(*args: str) -> None:
        # umask 022, as most shells have it: the node must not rely on it.
        done = subprocess.run(
            [sys.executable, "-m", "node.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            umask=0o022,
        )
        assert done.returncode == 0, done.stderr

    run("init")
    run("add", str(notes))
    written = [flurry.home, *flurry.home.rglob("*")]
    assert any(p.name.startswith("vault") for p in written)
    for path in written:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        assert mode & 0o077 == 0 and mode & expected == mode, f"{path} is {oct(mode)}"


def test_a_file_name_that_is_not_utf8_is_skipped_and_the_rest_added(tmp_path, env):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "good.md").write_text("# Good\n\nThe key is under the mat.\n")
    with open(os.path.join(os.fsencode(notes), b"caf\xe9.md"), "wb") as f:
        f.write(b"# Bad name\n\nlatin-1 name\n")
    os.mkdir(os.path.join(os.fsencode(notes), b"d\xfcr"))
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    added = subprocess.run(
        [sys.executable, "-m", "node.cli", "add", str(notes)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert added.returncode == 0, added.stderr
    shown = added.stdout + added.stderr
    assert "Traceback" not in shown and NOT_UTF8 in shown and "caf\ufffd.md" in shown
    status = subprocess.run(
        [sys.executable, "-m", "node.cli", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert status.returncode == 0 and "documents  1 " in status.stdout, status.stdout
