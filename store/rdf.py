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
from dataclasses import dataclass
from typing import Any

from rdflib import RDF, RDFS, BNode, Graph, Literal, Namespace, URIRef, Variable
from rdflib.graph import QuotedGraph
from rdflib.namespace import DCTERMS, FOAF, SKOS, XSD
from rdflib.term import Node

from store.errors import StoreError

TURTLE = "text/turtle"
JSON_LD = "application/ld+json"
# What a resource may be stored as and read back as; the first is the default.
RDF_TYPES = {TURTLE: "turtle", JSON_LD: "json-ld"}

VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
SCHEMA = Namespace("https://schema.org/")
SCHEMA_HTTP = Namespace("http://schema.org/")
BOOKMARK = Namespace("http://www.w3.org/2002/01/bookmark#")


class RDFSyntaxError(StoreError, ValueError):
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
    except (
        Exception
    ) as e:  # rdflib's parsers raise many types; each carries its line in its message
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
                    raise RDFSyntaxError(
                        "a remote @context is not fetched here: write the context inline"
                    )
            stack.extend(item.values())


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def serialize(graph: Graph, media_type: str, base: str | None = None) -> bytes:
    if media_type == JSON_LD:
        # Absolute IRIs, no @context guessing: any JSON-LD processor reads it the same way.
        return graph.serialize(format="json-ld", indent=2).encode()
    return graph.serialize(format=RDF_TYPES[media_type], base=base).encode()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


# --- a graph as text for the search indexes -----------------------------------------------

_NAMES = [
    FOAF.name,
    VCARD.fn,
    SCHEMA.name,
    SCHEMA_HTTP.name,
    RDFS.label,
    SKOS.prefLabel,
    DCTERMS.title,
    BOOKMARK.title,
]
_LABELS: dict[Node, str] = {
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
_VALUE_PARTS = [
    VCARD.value,
    RDF.value,
    VCARD["street-address"],
    VCARD.locality,
    VCARD["postal-code"],
    VCARD["country-name"],
]


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
            facts.append(
                f"{_LABELS.get(predicate) or _local_words(predicate)} {_value(graph, obj)}"
            )
        name = _name(graph, subject) + (f" ({', '.join(kinds)})" if kinds else "")
        lines.append(f"{name}: {'; '.join(facts).rstrip('.')}." if facts else f"{name}.")
    return "\n".join(lines)


def _name(graph: Graph, subject: Node) -> str:
    for predicate in _NAMES:
        value = graph.value(subject, predicate)
        if value is not None:
            return str(value)
    return _local_words(subject) if isinstance(subject, URIRef) else "something"


def _value(graph: Graph, obj: Node) -> str:
    if isinstance(obj, Literal):
        return str(obj)
    if isinstance(obj, BNode) or (
        isinstance(obj, URIRef) and any(True for _ in graph.predicate_objects(obj))
    ):
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


def _local_words(iri: Node) -> str:
    local = re.split(r"[#/:]", str(iri).rstrip("/#"))[-1]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", local).replace("-", " ").replace(
        "_", " "
    ).lower() or str(iri)


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


def acl_graph(
    acl_url: str,
    target_url: str,
    rules: list[tuple[str | None, frozenset[str]]],
    *,
    container: bool,
) -> Graph:
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


# --- N3 Patch (Solid Protocol, "N3 Patch") ---------------------------------------------------------

N3 = "text/n3"
SOLID = Namespace("http://www.w3.org/ns/solid/terms#")
PIM = Namespace("http://www.w3.org/ns/pim/space#")
# A where clause is joined against the document pattern by pattern; both bounds keep that
# join small whatever a client sends (Solid clients send a handful of patterns).
MAX_PATCH_PATTERNS = 64
MAX_PATCH_STEPS = 100_000

Triple = tuple[
    Node, Node, Node
]  # (subject, predicate, object); a term may be a Variable in a patch
Binding = dict[Node, Node]  # a patch's variables (and blank nodes) → the terms they match


class InvalidPatch(StoreError, ValueError):
    """A well-formed N3 document that is not an N3 Patch this server applies (422)."""


class PatchConflict(StoreError, ValueError):
    """The patch does not apply to the document as it is (409): no single match of its
    conditions, or a deletion that is not there."""


@dataclass(frozen=True)
class N3Patch:
    conditions: tuple[Triple, ...]  # solid:where
    deletions: tuple[Triple, ...]  # solid:deletes
    insertions: tuple[Triple, ...]  # solid:inserts


def parse_n3_patch(body: bytes, base: str) -> N3Patch:
    """The solid:InsertDeletePatch in ``body`` (text/n3); RDFSyntaxError when it is not N3,
    InvalidPatch when it breaks the protocol's constraints on a patch."""
    graph = Graph()
    try:
        graph.parse(data=body.decode("utf-8"), format="n3", publicID=base)
    except UnicodeDecodeError as e:
        raise RDFSyntaxError(f"not UTF-8 (byte {e.start})") from None
    except Exception as e:  # rdflib's N3 parser raises many types; each carries its line
        raise RDFSyntaxError(_one_line(str(e)) or type(e).__name__) from None
    clauses = (SOLID.where, SOLID.deletes, SOLID.inserts)
    patches = {
        s for s, p, o in graph if p in clauses or (p == RDF.type and o == SOLID.InsertDeletePatch)
    }
    if len(patches) != 1:
        raise InvalidPatch(
            f"an N3 Patch holds exactly one patch resource; this one holds {len(patches)}"
        )
    (patch,) = patches
    if (patch, RDF.type, SOLID.InsertDeletePatch) not in graph:
        raise InvalidPatch("the patch resource must be typed solid:InsertDeletePatch")
    formulae: list[tuple[Triple, ...]] = []
    for clause in clauses:
        values = list(graph.objects(patch, clause))
        if len(values) > 1:
            raise InvalidPatch(f"the patch has more than one {clause.n3(graph.namespace_manager)}")
        formula = values[0] if values else None
        if formula is not None and not isinstance(formula, QuotedGraph):
            raise InvalidPatch(f"{clause.n3(graph.namespace_manager)} must be a formula: {{ … }}")
        triples = tuple(formula) if formula is not None else ()
        if any(isinstance(term, QuotedGraph) for triple in triples for term in triple):
            raise InvalidPatch("a patch's formulae may not be nested")
        formulae.append(triples)
    conditions, deletions, insertions = formulae
    if len(conditions) > MAX_PATCH_PATTERNS:
        raise InvalidPatch(f"solid:where holds at most {MAX_PATCH_PATTERNS} patterns here")
    bound = {term for triple in conditions for term in triple if _is_variable(term)}
    for name, triples in (("solid:deletes", deletions), ("solid:inserts", insertions)):
        terms = {term for triple in triples for term in triple}
        if any(isinstance(term, BNode) for term in terms):
            raise InvalidPatch(f"{name} may not hold blank nodes")
        unbound = sorted(str(t) for t in terms if isinstance(t, Variable) and t not in bound)
        if unbound:
            raise InvalidPatch(
                f"{name} uses variables that solid:where does not bind: ?{', ?'.join(unbound)}"
            )
    return N3Patch(conditions, deletions, insertions)


def apply_patch(graph: Graph, patch: N3Patch) -> None:
    """Apply ``patch`` to ``graph`` in place, as the protocol says: its conditions must match
    exactly one way, every deletion (after substitution) must be there; else PatchConflict and
    the graph is untouched."""
    solutions = _solutions(graph, patch.conditions)
    if len(solutions) != 1:
        found = "no" if not solutions else "more than one"
        raise PatchConflict(
            f"solid:where matches {found} way in the document; a patch applies where it matches exactly once"
        )
    (binding,) = solutions
    deletions = [_substitute(triple, binding) for triple in patch.deletions]
    missing = [t for t in deletions if t not in graph]
    if missing:
        raise PatchConflict(
            f"{len(missing)} of the triples solid:deletes names are not in the document, e.g. {' '.join(t.n3() for t in missing[0])}"
        )
    for triple in deletions:
        graph.remove(triple)
    for triple in patch.insertions:
        graph.add(_substitute(triple, binding))


def _is_variable(term: Node) -> bool:
    # A blank node in a condition matches anything, as in a SPARQL pattern.
    return isinstance(term, Variable | BNode)


def _substitute(triple: Triple, binding: Binding) -> Triple:
    s, p, o = triple
    return binding.get(s, s), binding.get(p, p), binding.get(o, o)


def _solutions(graph: Graph, patterns: tuple[Triple, ...]) -> list[Binding]:
    """Every distinct binding of the patterns' variables under which all of them are in
    ``graph``, stopping at two (one is what a patch needs). Patterns with fewer variables are
    joined first; past MAX_PATCH_STEPS candidate matches the where clause is refused."""
    solutions: list[Binding] = [{}]
    steps = 0
    for pattern in sorted(patterns, key=lambda t: sum(map(_is_variable, t))):
        grown: list[Binding] = []
        for binding in solutions:
            concrete = _substitute(pattern, binding)
            s, p, o = (None if _is_variable(t) else t for t in concrete)
            for match in graph.triples((s, p, o)):
                steps += 1
                if steps > MAX_PATCH_STEPS:
                    raise InvalidPatch(
                        f"solid:where is too broad: it needs more than {MAX_PATCH_STEPS} matching steps"
                    )
                extended = dict(binding)
                if all(
                    extended.setdefault(t, value) == value
                    for t, value in zip(concrete, match, strict=True)
                    if _is_variable(t)
                ):
                    grown.append(extended)
        solutions = grown
        if not solutions:
            return []
    distinct = {frozenset(b.items()): b for b in solutions}
    return list(distinct.values())[:2]


def storage_description(storage_url: str, *, owner: str) -> Graph:
    """The storage description resource (Solid Protocol, "Storage"): the storage and its owner."""
    graph = Graph()
    graph.bind("pim", PIM)
    graph.bind("solid", SOLID)
    storage = URIRef(storage_url)
    graph.add((storage, RDF.type, PIM.Storage))
    graph.add((storage, SOLID.owner, URIRef(owner)))
    return graph
