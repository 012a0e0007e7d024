"""The signed release format (skills.release): what is signed, and forgeries refused."""

from __future__ import annotations

import copy
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.jws import sign_json
from skills.manifest import Manifest
from skills.release import (
    ReleaseRefused,
    check_release,
    cosign,
    make_release,
    parse_release,
    tool_hash,
)

MANIFEST = Manifest.from_dict(
    {
        "name": "weather",
        "version": "1.0.0",
        "description": "Forecasts",
        "permissions": ["http:host=api.example.org"],
        "tools": [
            {
                "name": "forecast",
                "description": "The forecast for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
    }
)
WHEEL = b"PK\x03\x04 not really a zip, only bytes to hash"


def _key() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, did_key_from_ed25519_public(key.public_key().public_bytes_raw())


def test_release_round_trip_and_cosignature():
    key, did = _key()
    doc = make_release(MANIFEST, "weather-1.0.0-py3-none-any.whl", WHEEL, key, did)
    release = parse_release(json.dumps(doc).encode())
    assert release.author_did == did and release.cosigners == ()
    assert release.tools == {
        "forecast": tool_hash("forecast", "The forecast for a city", MANIFEST.tools[0].parameters)
    }
    release.check_wheel(WHEEL)
    release.check_manifest(MANIFEST)
    reviewer, reviewer_did = _key()
    cosigned = cosign(doc, reviewer, reviewer_did)
    assert check_release(cosigned).cosigners == (reviewer_did,)
    with pytest.raises(ReleaseRefused, match="signed it already"):
        cosign(cosigned, reviewer, reviewer_did)


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda d: d.update(signatures=[]), "unsigned"),
        (lambda d: d.update(version="1.0.1"), "signature refused"),  # replayed for another version
        (lambda d: d["wheel"].update(sha256="0" * 64), "signature refused"),
        (lambda d: d["tools"].update(forecast="1" * 64), "signature refused"),
        (lambda d: d.update(permissions=[*d["permissions"], "peers.send"]), "signature refused"),
        (lambda d: d.update(author_did=_key()[1]), "signature refused"),
        (lambda d: d.update(extra=1), "unknown release fields"),
        (lambda d: d["wheel"].update(size=10**9), "wheel must be"),
        (lambda d: d.update(name="../etc"), "not a skill name"),
    ],
)
def test_tampered_release_refused(tamper, reason):
    key, did = _key()
    doc = copy.deepcopy(make_release(MANIFEST, "w-1.0.0-py3-none-any.whl", WHEEL, key, did))
    tamper(doc)
    with pytest.raises(ReleaseRefused, match=reason):
        check_release(doc)


def test_signed_by_someone_else_refused():
    key, did = _key()
    other, other_did = _key()
    doc = make_release(MANIFEST, "w-1.0.0-py3-none-any.whl", WHEEL, other, other_did)
    doc = {**doc, "author_did": did}
    doc["signatures"] = [sign_json(doc, other, verification_method_id(other_did))]
    with pytest.raises(ReleaseRefused, match="not by its author"):
        check_release(doc)


def test_wheel_and_tools_checked_against_the_release():
    key, did = _key()
    release = check_release(make_release(MANIFEST, "w-1.0.0-py3-none-any.whl", WHEEL, key, did))
    with pytest.raises(ReleaseRefused, match="sha256"):
        release.check_wheel(WHEEL[:-1] + b"X")
    changed = Manifest.from_dict(
        {**MANIFEST.to_dict(), "tools": [{**MANIFEST.to_dict()["tools"][0], "description": "x"}]}
    )
    with pytest.raises(ReleaseRefused, match="differs from the release"):
        release.check_manifest(changed)
    with pytest.raises(ReleaseRefused, match="at most"):
        parse_release(b" " * (300 * 1024))
