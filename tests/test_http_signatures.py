"""RFC 9421 request signatures, the agent card JWS, and the signing httpx client.

The attack matrix below is one test per rejection reason; requests that the profile does not
let `sign_request` make (no nonce, no @target-uri, another alg…) are signed by hand with
`handmade`, which builds the signature base itself, independently of the library.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import socket
import threading
import time
from pathlib import Path

import http_sf
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from http_sf.types import InnerListType
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.errors import SignatureRejected
from identity.http_signatures import (
    check_content_digest,
    content_digest,
    sign_request,
    target_uri_from_scope,
    verify_request,
)
from identity.jws import JWSRejected, canonical_json, sign_json, verify_json
from identity.replay_cache import ReplayCache
from identity.signing_client import (
    AGENT_HEADER,
    agent_label,
    async_signed_client,
    signed_client,
)

VECTORS = Path(__file__).parent / "vectors"
NOW = 1_750_000_000
URL = "http://127.0.0.1:8766/a2a"
BODY = b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage"}'
HEADERS = {"Host": "127.0.0.1:8766", "Content-Type": "application/json"}


def _identity(seed: int) -> tuple[Ed25519PrivateKey, str, str]:
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    did = did_key_from_ed25519_public(raw)
    return key, did, verification_method_id(did)


KEY, DID, KEYID = _identity(1)
OTHER_KEY, OTHER_DID, OTHER_KEYID = _identity(2)


def signed(
    method="POST", url=URL, headers=HEADERS, body=BODY, key=KEY, keyid=KEYID, **kwargs
) -> dict[str, str]:
    kwargs.setdefault("now", NOW)
    return {**headers, **sign_request(method, url, headers, body, key, keyid, **kwargs)}


def verify(headers, method="POST", url=URL, body=BODY, cache=None, now=NOW, **kwargs) -> str:
    cache = ReplayCache() if cache is None else cache
    return verify_request(method, url, headers, body, replay_cache=cache, now=now, **kwargs)


def rejected(reason: str, headers, **kwargs) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as caught:
        verify(headers, **kwargs)
    assert caught.value.reason == reason, str(caught.value)
    return caught.value


def handmade(
    params: dict,
    components=("@method", "@target-uri"),
    method="POST",
    url=URL,
    headers=None,
    key=KEY,
) -> dict[str, str]:
    """Sign any component list and parameters, building the RFC 9421 base by hand.

    Without ``headers`` the request has only a Host header, for a body of b"".
    """
    headers = {"Host": "127.0.0.1:8766"} if headers is None else headers
    fields = {name.lower(): value for name, value in headers.items()}
    authority, path = url.split("/")[2], "/" + url.split("/", 3)[3]
    values = {
        "@method": method,
        "@target-uri": url,
        "@authority": authority,
        "@path": path,
        **fields,
    }
    inner_list: InnerListType = ([(name, {}) for name in components], params)
    signature_input = http_sf.ser({"sig1": inner_list})
    lines = [f'"{name}": {values[name]}' for name in components]
    lines.append('"@signature-params": ' + signature_input.partition("=")[2])
    signature = key.sign("\n".join(lines).encode("ascii"))
    return {
        **headers,
        "Signature-Input": signature_input,
        "Signature": http_sf.ser({"sig1": (signature, {})}),
    }


def good_params(**changes) -> dict:
    params = {
        "created": NOW,
        "expires": NOW + 300,
        "nonce": "n-0123456789",
        "keyid": KEYID,
        "alg": "ed25519",
    }
    params.update(changes)
    return {name: value for name, value in params.items() if value is not None}


# --- RFC 9421 Appendix B.2.6 ------------------------------------------------------------


class _VectorRequest:
    def __init__(self, vector: dict) -> None:
        self.method = vector["request"]["method"]
        self.url = vector["request"]["url"]
        self.headers = dict(vector["request"]["headers"])


def test_rfc9421_b26_ed25519_vector_reproduced_exactly():
    vector = json.loads((VECTORS / "rfc9421-b26.json").read_text())
    key = serialization.load_pem_private_key(vector["key"]["private_pem"].encode(), password=None)
    public = serialization.load_pem_public_key(vector["key"]["public_pem"].encode())
    keyid = vector["key"]["keyid"]
    request = _VectorRequest(vector)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={keyid: key}),
    )
    created = datetime.datetime.fromtimestamp(vector["created"], tz=datetime.UTC)
    prepared = signer.prepare(
        request,
        key_id=keyid,
        created=created,
        label=vector["label"],
        include_alg=False,  # the RFC's example carries no alg parameter
        covered_component_ids=vector["covered_components"],
        use_existing_digest=True,  # the library refuses a message that already has one otherwise
    )
    assert prepared.signature_base.decode() == vector["signature_base"]
    signature = key.sign(prepared.signature_base)  # Ed25519 is deterministic
    signer.apply(request, prepared, signature)
    assert request.headers["Signature-Input"] == vector["signature_input"]
    assert request.headers["Signature"] == vector["signature"]

    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={keyid: public}, private_keys={}),
    )
    verifier.max_clock_skew = datetime.timedelta(days=365 * 100)  # the example was signed in 2021
    (result,) = verifier.verify(request, max_age=None)
    assert result.parameters == {"created": vector["created"], "keyid": keyid}


def test_rfc9530_content_digest_of_the_rfc9421_test_body():
    vector = json.loads((VECTORS / "rfc9421-b26.json").read_text())
    body = vector["request"]["body"].encode()
    check_content_digest(
        dict(vector["request"]["headers"])["Content-Digest"], body
    )  # the sha-512 member
    assert content_digest(body) == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"


# --- accepted requests --------------------------------------------------------------------


def test_a_signed_request_verifies_once_and_its_replay_is_refused():
    cache = ReplayCache()
    headers = signed()
    assert set(headers) >= {"Content-Digest", "Signature-Input", "Signature"}
    assert verify(headers, cache=cache) == DID
    rejected("replayed_nonce", headers, cache=cache)
    rejected("replayed_nonce", headers, cache=cache, now=NOW + 200)  # still within its lifetime


def test_the_profile_covers_method_target_uri_content_type_and_digest():
    (members,) = http_sf.parse(signed()["Signature-Input"].encode(), tltype="dictionary").values()
    components, params = members
    assert [name for name, _ in components] == [
        "@method",
        "@target-uri",
        "content-type",
        "content-digest",
    ]
    assert params["keyid"] == KEYID and params["alg"] == "ed25519"
    assert params["expires"] - params["created"] == 300 and params["nonce"]


def test_zero_byte_body_needs_no_digest_but_a_body_added_later_is_refused():
    headers = signed("GET", body=b"", headers={"Host": "127.0.0.1:8766"})
    assert "Content-Digest" not in headers
    assert verify(headers, method="GET", body=b"") == DID
    rejected("missing_content_digest", headers, method="GET", body=b"smuggled")


def test_query_strings_are_signed_as_sent():
    url = URL + "?b=2&a=1&text=caf%C3%A9%20au%20lait&empty="
    headers = signed(url=url)
    assert verify(headers, url=url) == DID
    rejected("signature_invalid", headers, url=URL + "?a=1&b=2&text=caf%C3%A9%20au%20lait&empty=")
    rejected("signature_invalid", headers, url=URL)


def test_non_ascii_header_values_outside_the_signature_are_harmless():
    # Servers hand header bytes over as latin-1 text: UTF-8 "café" arrives as "cafÃ©".
    headers = signed(headers={**HEADERS, "X-Note": "café".encode().decode("latin-1")})
    assert verify(headers) == DID


def test_non_ascii_values_cannot_be_signed_or_smuggled_into_covered_fields():
    with pytest.raises(ValueError):
        signed(headers={**HEADERS, "Content-Type": "text/plain; charset=ünïcode"})
    headers = signed()
    headers["Content-Type"] = "application/json; évil"
    rejected("signature_invalid", headers)


def test_two_keys_each_have_their_own_nonces():
    cache = ReplayCache()
    assert verify(signed(nonce="same"), cache=cache) == DID
    assert verify(signed(nonce="same", key=OTHER_KEY, keyid=OTHER_KEYID), cache=cache) == OTHER_DID


def test_starlette_style_repeated_header_lines_are_read_like_the_library_reads_them():
    headers = signed()
    lines = list(headers.items()) + [("X-Repeated", "one"), ("x-repeated", "two")]

    class Lines:
        def items(self):
            return lines

    assert verify(Lines()) == DID


# --- the attack matrix: one rejection reason each ----------------------------------------


def test_missing_signature_headers():
    rejected("missing_signature", dict(HEADERS))
    headers = signed()
    rejected("missing_signature", {k: v for k, v in headers.items() if k != "Signature"})
    rejected("missing_signature", {k: v for k, v in headers.items() if k != "Signature-Input"})
    rejected("missing_signature", {**headers, "Signature": "", "Signature-Input": ""})


@pytest.mark.parametrize(
    "field, value",
    [
        ("Signature-Input", "sig1=(garbage"),
        ("Signature-Input", 'sig1="not a list"'),
        ("Signature-Input", "sig1=(@method)"),
        ("Signature-Input", "sig1=(1 2);created=1"),
        ("Signature-Input", "é=()"),
        ("Signature", "sig1=not-bytes"),
        ("Signature", "sig1=:bm90IGJhc2U2NA==:, sig2=:AAAA:"),
        ("Signature", "other=:AAAA:"),
    ],
)
def test_malformed_signature_headers(field, value):
    rejected("malformed_signature", {**signed(), field: value})


def test_two_signatures_are_refused():
    headers = signed()
    headers["Signature-Input"] += ", sig2=" + headers["Signature-Input"].partition("=")[2]
    headers["Signature"] += ", sig2=" + headers["Signature"].partition("=")[2]
    rejected("malformed_signature", headers)


def test_duplicate_labels_are_refused():
    headers = signed()
    headers["Signature-Input"] = headers["Signature-Input"] + ", " + headers["Signature-Input"]
    rejected("malformed_signature", headers)


@pytest.mark.parametrize(
    "params",
    [
        good_params(created="1750000000"),
        good_params(nonce=12345),
        good_params(nonce="x" * 129),
        good_params(expires=NOW),
        good_params(expires=NOW - 10),
        good_params(unknown="parameter"),
    ],
)
def test_malformed_parameters(params):
    rejected("malformed_signature", handmade(params), body=b"")


@pytest.mark.parametrize(
    "keyid",
    [
        "test-key-ed25519",
        DID,  # the bare DID, not its verification method
        f"{DID}#key-1",
        f"{DID}#{OTHER_DID.removeprefix('did:key:')}",
        "did:web:example.com#key-1",
        # An X25519 key-agreement did:key cannot sign.
        "did:key:z6LSeu9HkTHSfLLeUs2nnzUSNedgDUevfNQgQjQC23ZCit6F#z6LSeu9HkTHSfLLeUs2nnzUSNedgDUevfNQgQjQC23ZCit6F",
        "did:key:z" + "1" * 5000,
    ],
)
def test_unknown_or_unsupported_keyid(keyid):
    rejected("unsupported_keyid", handmade(good_params(keyid=keyid)), body=b"")


def test_missing_keyid():
    rejected("unsupported_keyid", handmade(good_params(keyid=None)), body=b"")


@pytest.mark.parametrize("alg", ["hmac-sha256", "rsa-pss-sha512", "ED25519", "ecdsa-p256-sha256"])
def test_unsupported_alg(alg):
    rejected("unsupported_alg", handmade(good_params(alg=alg)), body=b"")


def test_alg_may_be_omitted_since_the_did_key_fixes_it():
    assert verify(handmade(good_params(alg=None)), body=b"") == DID


def test_a_handmade_signature_with_the_full_profile_verifies():
    """The check on `handmade` itself: what it builds, the library verifies."""
    headers = {"Host": "127.0.0.1:8766", "Content-Digest": content_digest(BODY)}
    made = handmade(
        good_params(), components=("@method", "@target-uri", "content-digest"), headers=headers
    )
    assert verify(made) == DID


def test_signature_by_another_key():
    rejected("signature_invalid", signed(key=OTHER_KEY, keyid=KEYID))


def test_did_url_of_another_key():
    rejected("signature_invalid", signed(keyid=OTHER_KEYID))


@pytest.mark.parametrize(
    "change",
    [
        {"method": "PUT"},
        {"url": "http://127.0.0.1:8766/admin"},
        {"url": "http://127.0.0.1:8767/a2a"},
        {"url": "https://127.0.0.1:8766/a2a"},
    ],
)
def test_tampered_components(change):
    rejected("signature_invalid", signed(), **change)


def test_tampered_content_type():
    rejected("signature_invalid", {**signed(), "Content-Type": "application/x-www-form-urlencoded"})


def test_tampered_signature_bytes():
    headers = signed()
    raw = bytearray(http_sf.parse(headers["Signature"].encode(), tltype="dictionary")["sig1"][0])
    raw[0] ^= 1
    rejected("signature_invalid", {**headers, "Signature": http_sf.ser({"sig1": (bytes(raw), {})})})


def test_tampered_signed_parameters():
    headers = signed()
    rejected(
        "signature_invalid",
        {
            **headers,
            "Signature-Input": headers["Signature-Input"].replace(
                f"created={NOW}", f"created={NOW + 1}"
            ),
        },
    )


def test_body_tampered():
    rejected("body_tampered", signed(), body=BODY.replace(b"SendMessage", b"DeleteEverything"))


def test_content_digest_swapped_for_the_tampered_body():
    tampered = BODY + b" "
    rejected(
        "signature_invalid", {**signed(), "Content-Digest": content_digest(tampered)}, body=tampered
    )


def test_content_digest_missing_when_there_is_a_body():
    rejected("missing_content_digest", handmade(good_params(), headers=HEADERS))


def test_content_digest_present_but_not_covered():
    headers = {**HEADERS, "Content-Digest": content_digest(BODY)}
    rejected("components_not_covered", handmade(good_params(), headers=headers))


@pytest.mark.parametrize(
    "components", [("@method",), ("@target-uri",), ("@method", "@path", "@authority"), ()]
)
def test_required_components_not_covered(components):
    rejected("components_not_covered", handmade(good_params(), components=components), body=b"")


def test_created_in_the_future():
    rejected("created_in_future", signed(now=NOW + 31))
    assert verify(signed(now=NOW + 30)) == DID  # within max_skew


def test_expired():
    rejected("expired", signed(now=NOW - 331))  # expired 31 s ago
    assert verify(signed(now=NOW - 330)) == DID  # expired 30 s ago: within max_skew


def test_lifetime_longer_than_allowed():
    rejected("lifetime_too_long", signed(expires_in=301))
    rejected("lifetime_too_long", signed(expires_in=30), max_lifetime=20)


@pytest.mark.parametrize("missing", ["created", "expires", "nonce"])
def test_missing_created_expires_or_nonce(missing):
    rejected(f"missing_{missing}", handmade(good_params(**{missing: None})), body=b"")


# --- the replay cache ---------------------------------------------------------------------


def test_replay_cache_full_of_live_nonces_refuses_instead_of_forgetting():
    cache = ReplayCache(max_entries=2)
    first, second, third = (signed(nonce=f"n{i}") for i in range(3))
    verify(first, cache=cache)
    verify(second, cache=cache)
    rejected("replay_cache_full", third, cache=cache)
    rejected("replayed_nonce", first, cache=cache)  # still remembered
    assert len(cache) == 2


def test_replay_cache_evicts_expired_entries():
    cache = ReplayCache(max_entries=2)
    verify(signed(nonce="a"), cache=cache)
    verify(signed(nonce="b"), cache=cache)
    later = NOW + 300 + 30 + 1  # both expired, skew included
    verify(signed(nonce="c", now=later), cache=cache, now=later)
    assert len(cache) == 1


def test_replay_cache_is_thread_safe():
    cache = ReplayCache()
    headers = signed()
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            outcomes.append(verify(headers, cache=cache))
        except SignatureRejected as rejection:
            outcomes.append(rejection.reason)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [DID] + ["replayed_nonce"] * 15


# --- hostile input gives SignatureRejected and nothing else ------------------------------

_FIELD_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=200)


@settings(max_examples=400, deadline=None)
@given(
    field=st.sampled_from(
        ["Signature-Input", "Signature", "Content-Digest", "Content-Type", "Host"]
    ),
    value=_FIELD_TEXT,
    method=st.sampled_from(["POST", "GET", "post", "", "P\nOST"]),
    url=st.sampled_from(
        [URL, "", "not a url", "http://[::1", "http://h/ä", "http://h/%zz", URL + "?q=\x00"]
    ),
    body=st.binary(max_size=40),
)
def test_fuzzed_fields_only_ever_raise_signature_rejected(field, value, method, url, body):
    headers = {**signed(), field: value}
    with contextlib.suppress(SignatureRejected):
        verify(headers, method=method, url=url, body=body)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=400), replacement=_FIELD_TEXT)
def test_fuzzed_splices_into_signature_input_only_raise_signature_rejected(position, replacement):
    headers = signed()
    original = headers["Signature-Input"]
    headers["Signature-Input"] = (
        original[:position] + replacement + original[position + len(replacement) :]
    )
    with contextlib.suppress(SignatureRejected):
        verify(headers)


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(["created", "expires", "nonce", "keyid", "alg", "tag", "x"]),
        st.one_of(
            st.integers(-(2**40), 2**40), st.text(max_size=30), st.booleans(), st.binary(max_size=8)
        ),
    )
)
def test_fuzzed_parameters_only_raise_signature_rejected(params):
    try:
        made = handmade(params)
    except (ValueError, UnicodeError):
        return  # not serialisable as a structured field: nothing to send
    with contextlib.suppress(SignatureRejected):
        verify(made, body=b"")


def test_odd_header_containers_are_rejected_cleanly():
    for headers in (None, 42, "Signature: x", [("Signature", "x")]):
        with pytest.raises(SignatureRejected):
            verify(headers)


# --- @target-uri from an ASGI scope -------------------------------------------------------


def _scope(**changes) -> dict:
    scope = {
        "type": "http",
        "scheme": "http",
        "headers": [(b"host", b"127.0.0.1:8766"), (b"content-type", b"application/json")],
        "path": "/a b",
        "raw_path": b"/a%20b",
        "query_string": b"x=1&y=%C3%A9",
    }
    scope.update(changes)
    return scope


def test_target_uri_from_scope_uses_host_raw_path_and_query_as_sent():
    assert target_uri_from_scope(_scope()) == "http://127.0.0.1:8766/a%20b?x=1&y=%C3%A9"
    assert target_uri_from_scope(_scope(query_string=b"")) == "http://127.0.0.1:8766/a%20b"
    assert (
        target_uri_from_scope(_scope(raw_path=b"/a%20b?x=1", query_string=b"x=1"))
        == "http://127.0.0.1:8766/a%20b?x=1"
    )
    assert target_uri_from_scope(_scope(scheme="https", raw_path=None, path="/p é")).startswith(
        "https://127.0.0.1:8766/p%20%C3%A9?"
    )


def test_target_uri_from_scope_checks_the_host():
    with pytest.raises(SignatureRejected) as caught:
        target_uri_from_scope(_scope(headers=[]))
    assert caught.value.reason == "missing_host"
    with pytest.raises(SignatureRejected) as caught:
        target_uri_from_scope(_scope(headers=[(b"host", b"a"), (b"host", b"b")]))
    assert caught.value.reason == "missing_host"
    with pytest.raises(SignatureRejected) as caught:
        target_uri_from_scope(_scope(), allowed_hosts={"node.example"})
    assert caught.value.reason == "wrong_host"
    assert target_uri_from_scope(_scope(), allowed_hosts={"127.0.0.1:8766"})


# --- SigningAuth against a real ASGI app --------------------------------------------------


def _app(allowed_hosts: set[str] | None) -> Starlette:
    cache = ReplayCache()

    async def endpoint(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            target = target_uri_from_scope(request.scope, allowed_hosts=allowed_hosts)
            did = verify_request(request.method, target, request.headers, body, replay_cache=cache)
        except SignatureRejected as rejection:
            return JSONResponse(
                {"reason": rejection.reason, "detail": str(rejection)}, status_code=401
            )
        return JSONResponse(
            {"did": did, "agent": request.headers.get(AGENT_HEADER), "body": body.decode()}
        )

    return Starlette(routes=[Route("/a2a", endpoint, methods=["GET", "POST"])])


def test_signing_auth_round_trip_through_asgi_and_replay_refused():
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=_app({"127.0.0.1:8766"}))
        async with async_signed_client(
            KEY, KEYID, transport=transport, base_url="http://127.0.0.1:8766"
        ) as client:
            posted = await client.post("/a2a", params={"q": "café"}, json={"hello": "wörld"})
            assert posted.status_code == 200, posted.text
            assert posted.json()["did"] == DID and posted.json()["agent"] is None
            fetched = await client.get("/a2a")
            assert fetched.status_code == 200, fetched.text
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8766"
        ) as plain:
            replay = await plain.send(posted.request)
            assert replay.status_code == 401 and replay.json()["reason"] == "replayed_nonce"
            unsigned = await plain.get("/a2a")
            assert unsigned.status_code == 401 and unsigned.json()["reason"] == "missing_signature"
        async with async_signed_client(
            KEY, KEYID, transport=transport, base_url="http://evil.example"
        ) as client:
            elsewhere = await client.get("/a2a")
            assert elsewhere.status_code == 401 and elsewhere.json()["reason"] == "wrong_host"

    asyncio.run(scenario())


def test_agent_made_requests_carry_a_signed_label():
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=_app(None))
        async with async_signed_client(
            KEY, KEYID, owner_did=OTHER_DID, transport=transport, base_url="http://n"
        ) as client:
            response = await client.post("/a2a", content=b"hi")
        assert response.status_code == 200, response.text
        assert (
            response.json()["agent"]
            == agent_label(OTHER_DID)
            == f'agent-made;on-behalf-of="{OTHER_DID}"'
        )
        assert '"flurry-agent"' in response.request.headers["Signature-Input"]
        # Stripping the label breaks the signature.
        async with httpx.AsyncClient(transport=transport, base_url="http://n") as plain:
            stripped = response.request
            del stripped.headers[AGENT_HEADER]
            refused = await plain.send(stripped)
        assert refused.status_code == 401 and refused.json()["reason"] == "signature_invalid"

    asyncio.run(scenario())


def test_signing_auth_refuses_a_keyid_that_is_not_a_did_url():
    with pytest.raises(ValueError):
        signed_client(KEY, DID)


def test_signing_auth_round_trip_through_real_uvicorn():
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(_app({f"127.0.0.1:{port}"}), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with signed_client(KEY, KEYID, base_url=f"http://127.0.0.1:{port}") as client:
            response = client.post(
                "/a2a?x=1&y=a%2Fb", content=BODY, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"did": DID, "agent": None, "body": BODY.decode()}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as plain:
            replay = plain.send(response.request)
            assert replay.status_code == 401 and replay.json()["reason"] == "replayed_nonce"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


# --- JWS over canonical JSON (A2A agent card signatures) ---------------------------------

CARD = {
    "name": "Ana's node",
    "description": "Ana's personal agent — café hours, garden, travel",
    "version": "0.1.0",
    "supportedInterfaces": [
        {"url": "http://127.0.0.1:8766/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ],
    "capabilities": {"streaming": True, "pushNotifications": False},
    "defaultInputModes": ["text/plain"],
    "defaultOutputModes": ["text/plain"],
    "skills": [
        {
            "id": "ask",
            "name": "Ask",
            "description": "Answers from the vault",
            "tags": ["qa"],
            "examples": [],
        }
    ],
    "rating": 4.5,
}


def _tampered_cards():
    for name in CARD:
        yield name, {**CARD, name: "tampered"}
    yield "nested value", {**CARD, "capabilities": {"streaming": False, "pushNotifications": False}}
    yield "list item", {**CARD, "skills": [{**CARD["skills"][0], "id": "delete"}]}
    yield "added field", {**CARD, "iconUrl": "http://evil.example/icon.png"}
    yield "removed field", {name: value for name, value in CARD.items() if name != "rating"}
    yield "number", {**CARD, "rating": 4.50001}


def test_jws_round_trip_returns_the_signer_did():
    signature = sign_json(CARD, KEY, KEYID)
    assert set(signature) == {"protected", "signature"}
    header = json.loads(base64.urlsafe_b64decode(signature["protected"] + "=="))
    assert header == {"alg": "EdDSA", "typ": "JOSE", "kid": KEYID}
    assert verify_json(CARD, signature) == DID


def test_jws_excludes_the_signatures_field():
    signature = sign_json(CARD, KEY, KEYID)
    card = {**CARD, "signatures": [signature]}
    assert sign_json(card, KEY, KEYID) == signature
    assert verify_json(card, signature) == DID


@pytest.mark.parametrize("what, card", list(_tampered_cards()))
def test_jws_tampering_any_field_fails(what, card):
    signature = sign_json(CARD, KEY, KEYID)
    with pytest.raises(JWSRejected) as caught:
        verify_json(card, signature)
    assert caught.value.reason == "signature_invalid", what


def test_jws_signature_by_another_key_fails():
    forged = sign_json(CARD, OTHER_KEY, OTHER_KEYID)
    forged["protected"] = sign_json(CARD, KEY, KEYID)["protected"]  # claims our kid
    with pytest.raises(JWSRejected) as caught:
        verify_json(CARD, forged)
    assert caught.value.reason == "signature_invalid"
    # Signed honestly, it verifies, as the other key's.
    assert verify_json(CARD, sign_json(CARD, OTHER_KEY, OTHER_KEYID)) == OTHER_DID


def _signed_with_header(header: dict, key=KEY) -> dict:
    protected = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(canonical_json(CARD)).rstrip(b"=").decode()
    signature = key.sign(f"{protected}.{payload}".encode())
    return {
        "protected": protected,
        "signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode(),
    }


@pytest.mark.parametrize(
    "kid", ["key-1", DID, "did:web:example.com#key-1", f"{DID}#other", None, 7]
)
def test_jws_kid_that_is_not_a_did_key_url_fails(kid):
    with pytest.raises(JWSRejected) as caught:
        verify_json(CARD, _signed_with_header({"alg": "EdDSA", "typ": "JOSE", "kid": kid}))
    assert caught.value.reason == "unsupported_kid"
    with pytest.raises(ValueError):
        sign_json(CARD, KEY, str(kid))


def test_jws_header_checks():
    def reason(signature: dict) -> str:
        with pytest.raises(JWSRejected) as caught:
            verify_json(CARD, signature)
        return caught.value.reason

    assert (
        verify_json(CARD, _signed_with_header({"alg": "Ed25519", "kid": KEYID})) == DID
    )  # RFC 9864 name
    assert reason(_signed_with_header({"alg": "ES256", "kid": KEYID})) == "unsupported_alg"
    assert reason(_signed_with_header({"alg": "none", "kid": KEYID})) == "unsupported_alg"
    assert (
        reason(_signed_with_header({"alg": "EdDSA", "kid": KEYID, "crit": ["b64"], "b64": False}))
        == "critical_header"
    )
    good = sign_json(CARD, KEY, KEYID)
    assert reason({**good, "header": {"kid": OTHER_KEYID}}) == "malformed"
    assert reason({**good, "protected": good["protected"] + "="}) == "malformed"
    assert (
        reason({**good, "signature": good["signature"].replace("-", "+").replace("_", "/") + "+"})
        == "malformed"
    )
    assert reason({"protected": good["protected"]}) == "malformed"
    assert reason({**good, "protected": "e30"}) == "unsupported_alg"  # {}
    duplicate = (
        base64.urlsafe_b64encode(b'{"alg":"EdDSA","kid":"x","kid":"' + KEYID.encode() + b'"}')
        .rstrip(b"=")
        .decode()
    )
    assert reason({**good, "protected": duplicate}) == "malformed"
    assert reason({**good, "signature": good["signature"][:-4]}) == "malformed"  # 61.5 bytes
    flipped = bytearray(base64.urlsafe_b64decode(good["signature"] + "=="))
    flipped[10] ^= 1
    assert (
        reason({**good, "signature": base64.urlsafe_b64encode(flipped).rstrip(b"=").decode()})
        == "signature_invalid"
    )


@settings(max_examples=200, deadline=None)
@given(
    protected=st.text(max_size=80),
    signature=st.text(max_size=100),
    header=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers())),
)
def test_jws_fuzzed_signatures_only_raise_jws_rejected(protected, signature, header):
    candidate = {"protected": protected, "signature": signature}
    if header is not None:
        candidate["header"] = header
    with contextlib.suppress(JWSRejected):
        verify_json(CARD, candidate)


def test_canonicalisation_makes_key_order_irrelevant():
    reordered = {name: CARD[name] for name in reversed(CARD)}
    reordered["capabilities"] = {"pushNotifications": False, "streaming": True}
    assert canonical_json(reordered) == canonical_json(CARD)
    assert verify_json(reordered, sign_json(CARD, KEY, KEYID)) == DID


def test_canonical_json_is_rfc8785():
    # The A2A v1.0 §8.4.1 example, after default-value removal.
    card = {
        "name": "Example Agent",
        "description": "",
        "capabilities": {"streaming": False, "pushNotifications": False},
        "skills": [],
    }
    assert (
        canonical_json(card)
        == b'{"capabilities":{"pushNotifications":false,"streaming":false},"description":"","name":"Example Agent","skills":[]}'
    )
    # Raw UTF-8 and ECMAScript number forms, not json.dumps's \u escapes and Python reprs.
    assert (
        canonical_json({"b": "café", "a": [1.0, 1e21, 0.1]})
        == '{"a":[1,1e+21,0.1],"b":"café"}'.encode()
    )
    with pytest.raises(JWSRejected) as caught:
        verify_json({**CARD, "rating": float("nan")}, sign_json(CARD, KEY, KEYID))
    assert caught.value.reason == "not_canonicalisable"
