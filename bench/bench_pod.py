"""The pod's read path, as ratios measured in one run, on loopback only.

    python bench/bench_pod.py

Every request is signed by the owner and verified, as in use; the requests are signed
before the clock starts. Baseline: GET /api/whoami (signature check and nothing else).
1. GET a Turtle resource as stored, against the baseline: what access, unsealing and the
   LDP headers cost (goal ratio >= 0.5).
2. GET it as JSON-LD (parsed and re-serialised by rdflib) against as stored.
3. GET a container of 500 members against one of 5: a listing is one sealed record, but
   its RDF grows with the members.
Repeated reads of an unchanged resource reuse its rendering (node.http.solid keeps them by ETag);
the first read pays rdflib's cost, printed last for 500 members against a cached read.
The server runs in its own process (bench_api.Server, as `flurry serve` does).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import PASSPHRASE, Server, _blast  # noqa: E402

from identity.did_key import verification_method_id  # noqa: E402
from identity.http_signatures import sign_request  # noqa: E402
from node.home import Home  # noqa: E402
from node.node import Node  # noqa: E402
from store.pod_store import PodStore  # noqa: E402
from store.rdf import container_graph, serialize  # noqa: E402

CONTACT = b"""@prefix vcard: <http://www.w3.org/2006/vcard/ns#> .
<#this> a vcard:Individual ; vcard:fn "Ana Silva" ;
    vcard:hasTelephone [ a vcard:Cell ; vcard:value <tel:+351-912-345-678> ] ;
    vcard:hasEmail <mailto:ana.silva@example.org> ; vcard:note "Met at the Porto ceramics fair." .
"""


def rate(
    server: Server, key, did: str, path: str, accept: str | None = None, count: int = 1500
) -> float:
    headers = {"accept": accept} if accept else {}
    requests = []
    for _ in range(count):
        signed = {
            **headers,
            **sign_request(
                "GET", server.url + path, headers, b"", key, verification_method_id(did)
            ),
        }
        requests.append(("GET", path, signed, b""))
    seconds, codes = asyncio.run(_blast(server.url, requests, 8))
    assert codes == {200: count}, (path, codes)
    return count / seconds


def main() -> None:
    os.environ.setdefault(
        "FLURRY_RUNTIME_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    )
    home = Home(Path(tempfile.mkdtemp(prefix="flurry-bench-pod-")) / "home")
    Node.init(home, PASSPHRASE)
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    pod = PodStore(node.vault)  # no indexing: this measures reading
    pod.put("/pod/contacts/ana", CONTACT, "text/turtle", base="http://bench/pod/contacts/ana")
    for n in range(5):
        pod.put(f"/pod/small/{n}", b"x", "text/plain", base="")
    for n in range(500):
        pod.put(f"/pod/large/{n}", b"x", "text/plain", base="")
    key, did = node.keys.owner_key, node.keys.owner_did
    node.close()
    server = Server(home)
    try:
        rate(server, key, did, "/api/whoami", count=300)  # warm up
        whoami = rate(server, key, did, "/api/whoami")
        turtle = rate(server, key, did, "/pod/contacts/ana", "text/turtle")
        jsonld = rate(server, key, did, "/pod/contacts/ana", "application/ld+json")
        small = rate(server, key, did, "/pod/small/", count=500)
        large = rate(server, key, did, "/pod/large/", count=500)
    finally:
        server.stop()
    print(f"baseline GET /api/whoami: {whoami:.0f} req/s")
    print(
        f"GET Turtle as stored: {turtle:.0f} req/s; ratio to baseline {turtle / whoami:.2f} (goal >= 0.5)"
    )
    print(f"GET as JSON-LD (rdflib): {jsonld:.0f} req/s; ratio to as stored {jsonld / turtle:.2f}")
    print(
        f"GET container of 500: {large:.0f} req/s; of 5: {small:.0f} req/s; ratio {large / small:.2f}"
    )
    started = time.perf_counter()
    urls = [f"http://bench/pod/large/{n}" for n in range(500)]
    serialize(container_graph("http://bench/pod/large/", urls, time.time()), "text/turtle")
    cold = time.perf_counter() - started
    print(
        f"first rendering of the 500-member listing: {cold * 1000:.0f} ms, {cold * large:.0f}x a cached read"
    )


if __name__ == "__main__":
    main()
