"""Publishing a skill (node.skill_publish), end to end: a real project folder built into a wheel in
the sandbox, a hand-made wheel, a real node's pod behind the real app on loopback read without a
signature, the release checked as an installer checks it (skills.release), the NIP-94
announcement read back from nostr-sdk's LocalRelay, and a peer's releases listed over HTTP
(node.skill_catalog) — with the refusals: a changed release under a published version, an
oversized wheel, an installed skill by name, a hostile listing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import cast

import httpx
import nostr_sdk
import pytest
from conftest import Served, open_new_home
from test_nostr import Loop, PlainClient
from test_skill_attacks import BUILT, trap  # noqa: F401 (fixture)
from test_skill_attacks import SETUP_PY as HOSTILE_SETUP_PY
from test_skills import make_wheel, needs_sandbox, node_home  # noqa: F401 (fixture)

from identity.did_key import verification_method_id
from identity.signing_client import signed_client
from node.node import Node
from node.nostr_wire import add_relay
from node.owner import Owner, OwnerError, RemoteOwner
from node.skill_catalog import CatalogError, Listed, list_published
from node.skill_publish import (
    KIND_FILE_METADATA,
    SKILLS_CONTAINER,
    PublishRefused,
    publish_skill,
)
from skills.release import MAX_WHEEL_BYTES, parse_release, tool_hashes
from skills.wheels import build_wheel, wheel_manifest

ECHO = """
from skills.sdk import Skill

def skill():
    return Skill(
        manifest={"name": "echo", "version": "1.0.0", "description": %r,
                  "permissions": ["http:host=api.example.org"],
                  "tools": [{"name": "echo", "description": %r,
                             "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}]},
        tools={"echo": lambda text="": text},
    )
"""
SETUP_PY = """
from setuptools import setup
setup(name="echo-skill", version="1.0.0", py_modules=["echo_skill"],
      entry_points={"flurry.skills": ["echo = echo_skill:skill"]})
"""
DESCRIPTION = "Says back what it is told."


def _project(folder: Path, tool_description: str = "Echo the text.") -> Path:
    folder.mkdir(parents=True)
    (folder / "setup.py").write_text(SETUP_PY)
    (folder / "echo_skill.py").write_text(ECHO % (DESCRIPTION, tool_description))
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The echo skill's project folder (setup.py + module): what its author works in."""
    return _project(tmp_path_factory.mktemp("project") / "echo")


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[Node]:
    node = open_new_home(tmp_path_factory.mktemp("publisher") / "home")
    yield node
    node.close()


@pytest.fixture(scope="module")
def served(node) -> Iterator[Served]:
    served = Served(node)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def remote(node, served) -> Iterator[Owner]:
    """The owner's CLI client of the running node (what `flurry skills publish` uses then)."""
    keys = node.keys
    with signed_client(
        keys.owner_key, verification_method_id(keys.owner_did), base_url=served.url, timeout=300
    ) as http:
        yield cast(Owner, RemoteOwner(http))


@pytest.fixture(scope="module")
def published(remote, project) -> dict:
    """The echo skill published from its folder, through the owner API of the served node."""
    return remote.publish_skill(str(project), False)


def _get(served: Served, path: str, **headers: str) -> httpx.Response:
    """An unsigned GET: anyone on the network, holding no key."""
    return httpx.get(served.url + path, headers=headers, timeout=30)


# --- publishing ---------------------------------------------------------------------------------


def test_a_folder_is_published_as_a_release_anyone_can_fetch_and_check(
    node, served, published, tmp_path
):
    assert published["written"] and (published["name"], published["version"]) == ("echo", "1.0.0")
    folder = "/pod/public/skills/echo/1.0.0/"
    assert published["manifest"] == folder + "manifest.json"

    manifest = _get(served, published["manifest"])
    assert manifest.status_code == 200, manifest.text
    assert manifest.headers["content-type"].startswith("application/json")
    release = parse_release(manifest.content)  # signature and every field checked
    assert release.author_did == node.keys.owner_did and release.cosigners == ()
    assert release.permissions == ("http:host=api.example.org",)
    assert hashlib.sha256(manifest.content).hexdigest() == published["manifest_sha256"]

    wheel = _get(served, published["wheel"])
    assert wheel.status_code == 200 and published["wheel"].endswith(".whl")
    release.check_wheel(wheel.content)
    # What the wheel's own code lists (read by the confined runner) is what was signed.
    (tmp_path / release.wheel_filename).write_bytes(wheel.content)
    listed = wheel_manifest(tmp_path / release.wheel_filename)
    release.check_manifest(listed)
    assert dict(release.tools) == tool_hashes(listed)

    # The container is public for reading, and only it: the rest of the pod still needs a signature.
    assert node.grants.public_rules()[SKILLS_CONTAINER] == frozenset({"read"})
    assert _get(served, SKILLS_CONTAINER).status_code == 200
    assert _get(served, "/pod/").status_code == 401


def test_the_project_folder_is_only_read(project, published):
    """The build ran in the sandbox on a copy: nothing was written beside the author's files."""
    assert sorted(p.name for p in project.iterdir()) == ["echo_skill.py", "setup.py"]


def test_the_same_release_again_is_a_no_op(node, remote, project, published):
    before = node.pod.read(published["manifest"])[0].etag
    again = remote.publish_skill(str(project), False)  # built again: the same bytes
    assert not again["written"]
    assert again["manifest_sha256"] == published["manifest_sha256"]
    assert node.pod.read(published["manifest"])[0].etag == before  # not even rewritten


def test_a_changed_release_under_a_published_version_is_refused(node, served, published, tmp_path):
    """A version never changes: the tool's description changed, the version did not."""
    changed = _project(tmp_path / "echo", tool_description="Echo the text, and more.")
    before = _get(served, published["manifest"]).content
    with pytest.raises(PublishRefused, match="published already.*raise the version"):
        publish_skill(node, str(changed))
    assert _get(served, published["manifest"]).content == before
    assert node.pod.get("/pod/public/skills/echo/").members == ("1.0.0/",)


def test_a_wheel_is_published_as_it_is(node, served, tmp_path):
    wheel = make_wheel(tmp_path, "tally", "tally_skill", TALLY)
    done = publish_skill(node, str(wheel))
    assert done.written and done.wheel_path == f"/pod/public/skills/tally/0.1.0/{wheel.name}"
    fetched = _get(served, done.wheel_path).content
    assert fetched == wheel.read_bytes()  # the very bytes given, not rebuilt
    parse_release(_get(served, done.manifest_path).content).check_wheel(fetched)

    (tmp_path / "other").mkdir()
    other = make_wheel(tmp_path / "other", "tally", "tally_skill", TALLY.replace("Count", "Tally"))
    with pytest.raises(PublishRefused, match="published already"):
        publish_skill(node, str(other))


TALLY = """
from skills.sdk import Skill

def skill():
    return Skill(
        manifest={"name": "tally", "version": "0.1.0", "description": "Counts words.",
                  "tools": [{"name": "tally", "description": "Count the words of a text.",
                             "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}]},
        tools={"tally": lambda text="": len(text.split())},
    )
"""


def test_a_publish_that_stopped_half_way_is_completed_and_tidied(node, served, tmp_path):
    """A wheel but no manifest (the node stopped between the two writes): not a release yet, so
    publishing again writes it, and what the earlier attempt left beside it goes."""
    wheel = make_wheel(tmp_path, "halfway", "halfway_skill", TALLY.replace("tally", "halfway"))
    folder = "/pod/public/skills/halfway/0.1.0/"
    node.pod.put(folder + wheel.name, b"an older build", "application/octet-stream", base="x")
    node.pod.put(folder + "halfway-0.0.9-py3-none-any.whl", b"stale", "application/zip", base="x")
    done = publish_skill(node, str(wheel))
    assert done.written
    assert sorted(node.pod.get(folder).members) == sorted(["manifest.json", wheel.name])
    parse_release(_get(served, done.manifest_path).content).check_wheel(
        _get(served, done.wheel_path).content
    )


def test_an_oversized_wheel_is_refused_with_the_limit_named(node, tmp_path):
    big = tmp_path / "big_skill-0.1.0-py3-none-any.whl"
    with big.open("wb") as f:
        f.truncate(MAX_WHEEL_BYTES + 1)
    with pytest.raises(PublishRefused, match=f"at most {MAX_WHEEL_BYTES} bytes"):
        publish_skill(node, str(big))
    assert node.pod.get("/pod/public/skills/big-skill/") is None


def test_an_installed_skill_by_name_is_refused_with_what_to_do(node, tmp_path):
    node.skills.install(make_wheel(tmp_path, "kept", "kept_skill", TALLY.replace("tally", "kept")))
    try:
        with pytest.raises(
            PublishRefused, match="installed skill.*publish from the project folder"
        ):
            publish_skill(node, "kept")
        with pytest.raises(PublishRefused, match="no such project folder or wheel"):
            publish_skill(node, "not-installed")
        archive = tmp_path / "kept-0.1.0.tar.gz"  # a source archive: its setup code is not run
        archive.write_bytes(b"\x1f\x8b not really")
        with pytest.raises(PublishRefused, match="give a skill's project folder or a built wheel"):
            publish_skill(node, str(archive))
    finally:
        node.skills.remove("kept")


def test_another_authors_skill_is_not_published_as_yours(node, tmp_path):
    from test_skills import AUTHOR  # a DID that is not this node's owner

    source = TALLY.replace("tally", "theirs").replace(
        '"description": "Counts words.",',
        f'"description": "Counts words.", "author_did": {AUTHOR!r},',
    )
    with pytest.raises(PublishRefused, match=f"names its author {AUTHOR}, not you"):
        publish_skill(node, str(make_wheel(tmp_path, "theirs", "theirs_skill", source)))
    assert node.pod.get("/pod/public/skills/theirs/") is None


def test_the_remote_owner_refuses_what_the_local_one_does(remote, tmp_path):
    with pytest.raises(OwnerError, match="no such project folder or wheel"):
        remote.publish_skill(str(tmp_path / "nothing"), False)


# --- listing a peer's releases ------------------------------------------------------------------


def test_a_peers_releases_are_listed_over_http_and_each_manifest_checks(node, served, published):
    # Things in the container that are not releases are ignored, not trusted.
    node.pod.put(SKILLS_CONTAINER + "README", b"hello", "text/plain", base="x")
    node.pod.make_container(SKILLS_CONTAINER + "Not_A_Name/")
    try:
        with httpx.Client(timeout=30) as http:  # unsigned: the container is public
            found = list_published(served.url, http)
            assert [(f.name, f.version) for f in found] == [
                ("echo", "1.0.0"),
                ("halfway", "0.1.0"),
                ("tally", "0.1.0"),
            ]
            for listed in found:
                assert listed.manifest_url.startswith(served.url + SKILLS_CONTAINER)
                release = parse_release(http.get(listed.manifest_url).content)
                assert (release.name, release.version) == (listed.name, listed.version)
            assert list_published(served.url, http, max_names=1) == found[:1]
            with pytest.raises(CatalogError, match="at most 100 are read"):
                list_published(served.url, http, max_listing_bytes=100)
    finally:
        node.pod.delete(SKILLS_CONTAINER + "README")
        node.pod.delete(SKILLS_CONTAINER + "Not_A_Name/")


def test_a_node_that_publishes_nothing_lists_nothing(tmp_path):
    def peer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(peer)) as http:
        assert list_published("http://peer.test", http) == []


def _listing(container_url: str, members: list[str]) -> bytes:
    return json.dumps(
        [
            {
                "@id": container_url,
                "http://www.w3.org/ns/ldp#contains": [{"@id": m} for m in members],
            }
        ]
    ).encode()


def test_a_hostile_listing_cannot_point_elsewhere_or_flood(tmp_path):
    """A stranger's pod (a stand-in at the edge of the world: httpx's MockTransport) lists
    members on other hosts, traversals, odd names, a flood of versions, and a huge listing."""
    asked: list[str] = []

    def peer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        path = request.url.path
        if path == "/pod/public/skills/":
            return httpx.Response(
                200,
                content=_listing(
                    "http://peer.test/pod/public/skills/",
                    [
                        "http://peer.test/pod/public/skills/good/",
                        "http://evil.test/pod/public/skills/elsewhere/",  # another host
                        "http://peer.test/pod/public/skills/../../private/",
                        "http://peer.test/pod/private/",
                        "http://peer.test/pod/public/skills/a/b/",
                        "http://peer.test/pod/public/skills/UPPER/",
                        "http://peer.test/pod/public/skills/huge/",
                    ],
                ),
            )
        if path == "/pod/public/skills/good/":
            versions = [f"http://peer.test/pod/public/skills/good/1.{i}.0/" for i in range(50)]
            return httpx.Response(
                200, content=_listing("http://peer.test/pod/public/skills/good/", versions)
            )
        if path == "/pod/public/skills/huge/":
            return httpx.Response(200, content=b"[" + b" " * 200_000 + b"]")
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(peer)) as http:
        with pytest.raises(CatalogError, match="huge/: the listing is 200002 bytes"):
            list_published("http://peer.test", http)
        found = list_published("http://peer.test", http, max_versions=3, max_names=1)
    # "elsewhere" is listed by path under the container, but its URL is built on the peer's base.
    assert found == [
        Listed("good", v, f"http://peer.test/pod/public/skills/good/{v}/manifest.json")
        for v in ("1.49.0", "1.48.0", "1.47.0")
    ]
    # Nothing off the container was asked for: not the other host's, the traversal, the odd names.
    assert set(asked) == {
        "/pod/public/skills/",
        "/pod/public/skills/good/",
        "/pod/public/skills/huge/",
    }


def test_a_listing_that_is_not_json_is_refused():
    def peer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"@prefix ldp: <x> . not json")

    with (
        httpx.Client(transport=httpx.MockTransport(peer)) as http,
        pytest.raises(CatalogError, match="not JSON"),
    ):
        list_published("http://peer.test", http)


# --- the announcement ---------------------------------------------------------------------------


def test_announcing_without_a_relay_is_refused_before_anything_is_written(node, served, tmp_path):
    node.config.public_urls = [served.url]
    wheel = make_wheel(tmp_path, "quiet", "quiet_skill", TALLY.replace("tally", "quiet"))
    with pytest.raises(PublishRefused, match="announcing needs a relay"):
        publish_skill(node, str(wheel), announce=True)
    assert node.pod.get("/pod/public/skills/quiet/") is None


@pytest.fixture(scope="module")
def relay() -> Iterator[tuple[Loop, str]]:
    """nostr-sdk's LocalRelay, on 127.0.0.1 only, and the loop the test's own client runs on."""
    loop = Loop()
    local = nostr_sdk.LocalRelayBuilder().addr("127.0.0.1").build()

    async def start() -> str:
        await local.run()
        return str(await local.url())

    url = loop.run(start())
    yield loop, url
    local.shutdown()
    loop.close()


def test_an_announcement_is_a_signed_nip94_event_pointing_at_the_manifest(
    node, served, published, remote, project, relay
):
    loop, url = relay
    add_relay(node.vault, url)
    wire = served.app.state.nostr
    wire.reload()  # as `flurry nostr relays add` has the server do
    assert node.nostr is wire and wire.running
    sent_before = wire.counts["sent"]
    node.config.public_urls = [served.url]  # what config.json's public_urls would say
    done = remote.publish_skill(str(project), True)
    assert wire.counts["sent"] == sent_before + 1  # on the server's connection, not a brief one
    assert not done["written"] and url.rstrip("/") in [
        r.rstrip("/") for r in done["announced"]["relays"]
    ]
    event_id = done["announced"]["event_id"]

    reader = PlainClient(loop, url)  # anyone on the relay, with nothing but nostr-sdk
    try:
        wanted = (
            nostr_sdk.Filter()
            .kind(nostr_sdk.Kind(KIND_FILE_METADATA))
            .author(nostr_sdk.PublicKey.parse(node.keys.nostr_public_key_hex))
        )
        events = loop.run(
            reader.client.fetch_events(
                nostr_sdk.ReqTarget.auto([wanted]), timeout=timedelta(seconds=3)
            )
        )
    finally:
        reader.close()
    event = next(e for e in events if e.id().to_hex() == event_id)
    assert event.verify() and event.content() == DESCRIPTION
    tags = {t.to_vec()[0]: t.to_vec()[1:] for t in event.tags()}
    manifest_url = served.url + published["manifest"]
    assert tags["url"] == [manifest_url] and tags["m"] == ["application/json"]
    assert tags["t"] == ["flurry-skill"]
    assert tags["name"] == ["echo"] and tags["version"] == ["1.0.0"]
    fetched = httpx.get(manifest_url, timeout=30).content  # where it points, unsigned
    assert tags["x"] == [hashlib.sha256(fetched).hexdigest()]
    assert tags["size"] == [str(len(fetched))]
    entry = next(e for e in node.audit.entries() if e.action == "nostr.announce")
    assert entry.details["event"] == event_id and entry.details["url"] == manifest_url


def test_a_wheel_built_in_the_sandbox_is_the_same_bytes_each_time(project, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = build_wheel(project, tmp_path / "a")
    second = build_wheel(project, tmp_path / "b")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()


# --- the command ----------------------------------------------------------------------------------


def test_the_command_publishes_a_relative_path_and_says_what_it_did(cli, tmp_path):
    cli("init")
    make_wheel(tmp_path, "tally", "tally_skill", TALLY)  # cli runs in tmp_path: a relative path
    wheel = "tally-0.1.0-py3-none-any.whl"
    first = cli("skills", "publish", wheel).stdout
    assert "published tally 0.1.0" in first
    assert "manifest: /pod/public/skills/tally/0.1.0/manifest.json" in first
    assert "already published, unchanged: tally 0.1.0" in cli("skills", "publish", wheel).stdout
    refused = cli("skills", "publish", "missing-skill", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "missing-skill: no such project folder or wheel (.whl)" in refused.stderr
    announce = cli("skills", "publish", wheel, "--announce", check=False)
    assert announce.returncode == 1 and "announcing needs the URL" in announce.stderr


def test_a_node_under_a_path_prefix_is_walked_under_it():
    """A node behind a proxy at https://host/flurry names its containers under that prefix."""
    base = "http://peer.test/flurry"

    def peer(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if request.url.path == "/flurry/pod/public/skills/":
            return httpx.Response(200, content=_listing(url, [url + "echo/"]))
        if request.url.path == "/flurry/pod/public/skills/echo/":
            return httpx.Response(200, content=_listing(url, [url + "2.0/"]))
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(peer)) as http:
        assert list_published(base + "/", http) == [
            Listed("echo", "2.0", base + "/pod/public/skills/echo/2.0/manifest.json")
        ]


# --- the build, attacked --------------------------------------------------------------------------


@needs_sandbox
def test_a_folder_built_to_publish_runs_its_setup_code_only_in_the_sandbox(trap, tmp_path):  # noqa: F811
    """The same attack as on install (test_skill_attacks): the build script tries the keyring,
    a file outside, the network; building the wheel to publish reaches none of them."""
    _, payload, nothing_escaped = trap
    project = tmp_path / "project"
    project.mkdir()
    (project / "setup.py").write_text(
        HOSTILE_SETUP_PY.format(
            payload=payload("setup"),
            keyring=payload.keyring,
            outside=payload.outside,
            port=payload.port,
        )
    )
    (project / "built_skill.py").write_text(BUILT)
    (tmp_path / "out").mkdir()
    wheel = build_wheel(project, tmp_path / "out")
    seen = json.loads(wheel_manifest(wheel).description)
    assert seen["keyring"].startswith("PermissionError"), seen
    assert seen["outside"].startswith("PermissionError"), seen
    assert "Network is unreachable" in seen["tcp"] or "PermissionError" in seen["tcp"]
    nothing_escaped()
    assert sorted(p.name for p in project.iterdir()) == ["built_skill.py", "setup.py"]
