"""RDF for the pod: parsing and writing Turtle and JSON-LD (rdflib), and a plain-text
rendering of a graph that the search indexes and the model can read.

The rendering reads like a line in an address book: "Ana Silva (individual): email address
ana@example.org; phone number +351-912-345-678." Terms from vCard, FOAF and schema.org get
their everyday names; any other predicate is named after its local name ("jobTitle" → "job
title"), and a node that has a name is named rather than shown as an IRI.
"""

from __future__ import annotations

import datetime
import json
import re

from rdflib import RDF, RDFS, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, SKOS, XSD

TURTLE = "text/turtle"
JSON_LD = "application/ld+json"
# What a resource may be stored as and read back as; the first is the default.
RDF_TYPES = {TURTLE: "turtle", JSON_LD: "json-ld"}

VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
SCHEMA = Namespace("https://schema.org/")
SCHEMA_HTTP = Namespace("http://schema.org/")
BOOKMARK = Namespace("http://www.w3.org/2002/01/bookmark#")


class RDFSyntaxError(ValueError):
    """The body does not parse as the RDF syntax it claims; the message names where."""


def parse(body: bytes, media_type: str, base: str) -> Graph:
    """The graph in ``body``; relative IRIs resolve against ``base`` (the resource's URL)."""
    graph = Graph()
    try:
        text = body.decode("utf-8")
        if media_type == JSON_LD:
            _refuse_remote_contexts(json.loads(text))
        graph.parse(data=text, format=RDF_TYPES[media_type], publicID=base)
    except UnicodeDecodeError as e:
        raise RDFSyntaxError(f"not UTF-8 (byte {e.start})") from None
    except RDFSyntaxError:
        raise
    except Exception as e:  # rdflib's parsers raise many types; each carries its line in its message
        raise RDFSyntaxError(_one_line(str(e)) or type(e).__name__) from None
    return graph


def rdf_text(body: bytes, media_type: str, base: str) -> str:
    """``graph_text`` of the graph in ``body`` (RDFSyntaxError if it is not valid): what the
    pod checks and indexes, run in a parser process (store.parse_process)."""
    return graph_text(parse(body, media_type, base))


def _refuse_remote_contexts(document: object) -> None:
    """JSON-LD may name its @context (or @import one) by URL, and rdflib would fetch it, from
    the network or a local file: outbound traffic nobody configured, on behalf of whoever sent
    the body. Only contexts written inline are read here."""
    stack = [document]
    while stack:  # not recursive: a deeply nested document must not exhaust the stack
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for context in _as_list(item.get("@context")):
                if isinstance(context, str) or (isinstance(context, dict) and "@import" in context):
                    raise RDFSyntaxError("a remote @context is not fetched here: write the context inline")
            stack.extend(item.values())


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def serialize(graph: Graph, media_type: str, base: str | None = None) -> bytes:
    if media_type == JSON_LD:
        # Absolute IRIs, no @context guessing: any JSON-LD processor reads it the same way.
        return graph.serialize(format="json-ld", indent=2).encode()
    return graph.serialize(format=RDF_TYPES[media_type], base=base).encode()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


# --- a graph as text for the search indexes -----------------------------------------------

_NAMES = [FOAF.name, VCARD.fn, SCHEMA.name, SCHEMA_HTTP.name, RDFS.label, SKOS.prefLabel, DCTERMS.title, BOOKMARK.title]
_LABELS = {
    VCARD.hasTelephone: "phone number",
    VCARD.tel: "phone number",
    FOAF.phone: "phone number",
    SCHEMA.telephone: "phone number",
    SCHEMA_HTTP.telephone: "phone number",
    VCARD.hasEmail: "email address",
    VCARD.email: "email address",
    FOAF.mbox: "email address",
    SCHEMA.email: "email address",
    SCHEMA_HTTP.email: "email address",
    VCARD.hasAddress: "address",
    VCARD["organization-name"]: "organisation",
    VCARD.hasOrganizationName: "organisation",
    SCHEMA.worksFor: "works for",
    VCARD.bday: "birthday",
    SCHEMA.birthDate: "birthday",
    VCARD.note: "note",
    VCARD.hasURL: "web page",
    FOAF.homepage: "web page",
    SCHEMA.url: "link",
    BOOKMARK.recalls: "link",
    FOAF.knows: "knows",
    DCTERMS.description: "description",
    SCHEMA.description: "description",
    RDFS.comment: "comment",
}
# Parts of a structured value (a vCard address, a telephone node) read in this order.
_VALUE_PARTS = [VCARD.value, RDF.value, VCARD["street-address"], VCARD.locality, VCARD["postal-code"], VCARD["country-name"]]


def graph_text(graph: Graph) -> str:
    """One line per described thing: its name, then what is said about it."""
    lines = []
    nested = {o for o in graph.objects() if isinstance(o, BNode)}
    for subject in sorted(set(graph.subjects()), key=str):
        if subject in nested:
            continue  # read as part of the thing that points at it
        facts, kinds = [], []
        for predicate, obj in sorted(graph.predicate_objects(subject)):
            if predicate in _NAMES:
                continue
            if predicate == RDF.type:
                kinds.append(_local_words(obj))
                continue
            facts.append(f"{_LABELS.get(predicate) or _local_words(predicate)} {_value(graph, obj)}")
        name = _name(graph, subject) + (f" ({', '.join(kinds)})" if kinds else "")
        lines.append(f"{name}: {'; '.join(facts).rstrip('.')}." if facts else f"{name}.")
    return "\n".join(lines)


def _name(graph: Graph, subject) -> str:
    for predicate in _NAMES:
        value = graph.value(subject, predicate)
        if value is not None:
            return str(value)
    return _local_words(subject) if isinstance(subject, URIRef) else "something"


def _value(graph: Graph, obj) -> str:
    if isinstance(obj, Literal):
        return str(obj)
    if isinstance(obj, BNode) or (isinstance(obj, URIRef) and any(True for _ in graph.predicate_objects(obj))):
        parts = [str(graph.value(obj, p)) for p in _VALUE_PARTS if graph.value(obj, p) is not None]
        if parts:
            return ", ".join(_plain(p) for p in parts)
        named = [graph.value(obj, p) for p in _NAMES if graph.value(obj, p) is not None]
        if named:
            return str(named[0])
    return _plain(str(obj))


def _plain(iri: str) -> str:
    """tel:+351… → +351…, mailto:a@b → a@b; other IRIs stay as they are."""
    for scheme in ("tel:", "mailto:"):
        if iri.startswith(scheme):
            return iri[len(scheme) :]
    return iri


def _local_words(iri) -> str:
    local = re.split(r"[#/:]", str(iri).rstrip("/#"))[-1]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", local).replace("-", " ").replace("_", " ").lower() or str(iri)


# --- LDP containers ---------------------------------------------------------------------------

LDP = Namespace("http://www.w3.org/ns/ldp#")


def container_graph(url: str, member_urls: list[str], modified: float) -> Graph:
    """An LDP basic container as RDF: its types, when it last changed, and ldp:contains per member."""
    graph = Graph()
    graph.bind("ldp", LDP)
    graph.bind("dcterms", DCTERMS)
    me = URIRef(url)
    for kind in (LDP.BasicContainer, LDP.Container, LDP.Resource):
        graph.add((me, RDF.type, kind))
    if modified:
        graph.add((me, DCTERMS.modified, Literal(_iso(modified), datatype=XSD.dateTime)))
    for member in member_urls:
        graph.add((me, LDP.contains, URIRef(member)))
    return graph


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- WAC access-control documents -------------------------------------------------------------

ACL = Namespace("http://www.w3.org/ns/auth/acl#")
_ACL_MODES = {"read": ACL.Read, "append": ACL.Append, "write": ACL.Write, "control": ACL.Control}


def acl_graph(acl_url: str, target_url: str, rules: list[tuple[str | None, frozenset[str]]], *, container: bool) -> Graph:
    """A WAC ACL document for ``target_url``: one acl:Authorization per (agent DID, modes);
    agent None is the public (acl:agentClass foaf:Agent). On a container each one is also its
    default, as inheritance is here."""
    graph = Graph()
    graph.bind("acl", ACL)
    graph.bind("foaf", FOAF)
    target = URIRef(target_url)
    for n, (agent, modes) in enumerate(rules, start=1):
        rule = URIRef(f"{acl_url}#rule{n}")
        graph.add((rule, RDF.type, ACL.Authorization))
        if agent is None:
            graph.add((rule, ACL.agentClass, FOAF.Agent))
        else:
            graph.add((rule, ACL.agent, URIRef(agent)))
        graph.add((rule, ACL.accessTo, target))
        if container:
            graph.add((rule, ACL.default, target))
        for mode in sorted(modes):
            graph.add((rule, ACL.mode, _ACL_MODES[mode]))
    return graph
