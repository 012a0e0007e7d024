"""The owner's WebID profile document (Solid WebID Profile), built as an rdflib graph.

The profile lives at ``<base>/profile/card`` and the owner is ``<base>/profile/card#me``. It
says who the owner is in the terms Solid clients read: the DID (``owl:sameAs``, and DID
Core's ``as:alsoKnownAs``), the pod's storage (``pim:storage``), the node's A2A agent card
(``rdfs:seeAlso``) and, when the node has one, the Nostr public key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rdflib import RDF, Graph, Literal, Namespace, URIRef
from rdflib.namespace import FOAF, OWL, RDFS

PIM = Namespace("http://www.w3.org/ns/pim/space#")
AS = Namespace("https://www.w3.org/ns/activitystreams#")
SCHEMA = Namespace("https://schema.org/")
# No W3C or Solid vocabulary names a Nostr key; w3id.org/nostr is the namespace nostralink uses
# for Nostr as RDF, where nostr:pubkey is the key in hex, as here.
NOSTR = Namespace("https://w3id.org/nostr#")
PROFILE_PATH = "/profile/card"

_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")


def webid(base_url: str) -> URIRef:
    return URIRef(f"{base_url.rstrip('/')}{PROFILE_PATH}#me")


def webid_profile(
    base_url: str,
    owner_did: str,
    *,
    agent_card_url: str,
    storage_path: str = "/pod/",
    name: str | None = None,
    nostr_pubkey: str | None = None,
    previous_dids: Sequence[str] = (),
    rotations_url: str | None = None,
) -> Graph:
    """The profile graph of the owner whose node answers at ``base_url`` (scheme://host[:port]).

    ``nostr_pubkey`` is the owner's Nostr key as 64 lowercase hex digits (x-only, NIP-01);
    without one the profile says nothing about Nostr. ``previous_dids`` are the owner's DIDs
    before key rotations (``as:alsoKnownAs``, as DID Core uses it), and ``rotations_url`` the
    signed statements that link them to the current one (``rdfs:seeAlso``).
    """
    base = base_url.rstrip("/")
    card = URIRef(base + PROFILE_PATH)
    me = webid(base)
    g = Graph()
    g.bind("foaf", FOAF)
    g.bind("pim", PIM)
    g.bind("as", AS)
    g.bind("schema", SCHEMA)
    g.bind("owl", OWL)
    g.add((card, RDF.type, FOAF.PersonalProfileDocument))
    g.add((card, FOAF.maker, me))
    g.add((card, FOAF.primaryTopic, me))
    g.add((me, RDF.type, FOAF.Person))
    g.add((me, RDF.type, SCHEMA.Person))
    g.add((me, FOAF.isPrimaryTopicOf, card))
    if name:
        g.add((me, FOAF.name, Literal(name)))
    g.add((me, OWL.sameAs, URIRef(owner_did)))  # the DID is the same person
    g.add((me, SCHEMA.sameAs, URIRef(owner_did)))
    g.add((me, PIM.storage, URIRef(base + storage_path)))  # Solid: where the pod is
    g.add((me, AS.alsoKnownAs, URIRef(owner_did)))  # DID Core's alsoKnownAs term
    g.add((me, RDFS.seeAlso, URIRef(agent_card_url)))  # the node that acts for the owner (A2A)
    for did in previous_dids:  # not owl:sameAs: a retired key no longer speaks for the owner
        g.add((me, AS.alsoKnownAs, URIRef(did)))
    if rotations_url is not None:
        g.add((me, RDFS.seeAlso, URIRef(rotations_url)))
    if nostr_pubkey is not None:
        if not _HEX_KEY.match(nostr_pubkey):
            raise ValueError("a Nostr public key is 64 lowercase hex digits (x-only, NIP-01)")
        g.bind("nostr", NOSTR)
        g.add((me, NOSTR.pubkey, Literal(nostr_pubkey)))
    return g
