"""What the owner manages: grants, tokens, peers, sends, skills, tool approvals and the
audit log — in one place.

`LocalOwner` does it on an open node; the API exposes the same object to the owner's
signed requests (/api/owner/...), and `RemoteOwner` is the command line's client of those
routes, used while `flurry serve` holds the home. Values cross as plain JSON-able dicts.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.approvals import UnknownApproval
from agent.grants import Grant
from agent.inbox_policy import DEFAULT_PER_DAY
from agent.tools import ToolPolicy
from identity.did_key import ed25519_public_from_did_key
from identity.nostr_key import parse_public_key
from node import (
    contracts_buyer,
    contracts_seller,
    contracts_wire,
    remote_models,
    skill_install,
    skill_search,
)
from node.errors import NotFound, OwnerError
from node.infer import infer_at_peer
from node.ledger import usage as ledger_usage
from node.nostr_peers import link_peer_from_card
from node.peer_owner import link_owner
from node.peering import send_to_peer
from node.peers import PeerError, add_peer, fetch_peer_card, list_peers
from node.skill_publish import publish_skill
from skills.registry import SkillInfo, UnknownSkill
from skills.tool_pins import review as tool_review
from store.pod_store import PodError

if TYPE_CHECKING:  # annotations only: node.node builds the skills' broker on node.skill_capabilities, which uses this
    from node.node import Node

__all__ = [
    "OPERATIONS",
    "LocalOwner",
    "NotFound",
    "Operation",
    "Owner",
    "OwnerError",
    "RemoteOwner",
]  # the errors live in node.errors


OWNER_PREFIX = "/api/owner"
NOTHING = "-"  # an operation whose answer the caller does not need (the route's body is ignored)


@dataclass(frozen=True)
class Operation:
    """One owner operation as it crosses HTTP: the route under /api/owner, the JSON fields its
    arguments travel in (positionally, as `LocalOwner`'s method takes them), how they travel
    ("json": a JSON object; "query": the query string; "body": the one argument is the whole
    JSON body), and what comes back (None: the body; a name: that field of it; NOTHING)."""

    name: str
    method: str
    path: str
    fields: tuple[str, ...] = ()
    send: str = "json"
    returns: str | None = None


# The one list of what the owner can do. Adding an operation: a row here, its method on
# LocalOwner and its line in Owner (checked at import); RemoteOwner's method is made from the
# row, and tests/test_owner_operations.py checks that the app serves the route.
OPERATIONS: tuple[Operation, ...] = (
    Operation("add_grant", "PUT", "/grants", ("grant",), send="body", returns=NOTHING),
    Operation("list_grants", "GET", "/grants"),
    Operation("remove_grant", "POST", "/grants/remove", ("did",), returns="removed"),
    Operation("create_token", "POST", "/tokens", ("name", "allow"), returns="token"),
    Operation("create_peer_token", "POST", "/tokens/peer", ("name", "peer"), returns="token"),
    Operation("list_tokens", "GET", "/tokens"),
    Operation("revoke_token", "POST", "/tokens/revoke", ("name",), returns="revoked"),
    Operation("add_peer", "POST", "/peers", ("url", "name")),
    Operation("list_peers", "GET", "/peers"),
    Operation("send", "POST", "/send", ("peer", "text")),
    Operation("verify_audit", "GET", "/audit"),
    Operation("list_skills", "GET", "/skills"),
    Operation("skill", "GET", "/skills/info", ("name",), send="query"),
    Operation("install_skill", "POST", "/skills/install", ("source",)),
    Operation("install_mcp", "POST", "/skills/install-mcp", ("name", "argv")),
    Operation("approve_skill", "POST", "/skills/approve", ("name", "permissions")),
    Operation("enable_skill", "POST", "/skills/enable", ("name",)),
    Operation("disable_skill", "POST", "/skills/disable", ("name",)),
    Operation("remove_skill", "POST", "/skills/remove", ("name",)),
    Operation("review_skill", "POST", "/skills/review", ("name", "accept", "accept_all")),
    Operation("set_tool_policy", "PUT", "/skills/policy", ("tool", "decision")),
    Operation("search_skills", "POST", "/skills/search", ("text",)),
    Operation("install_release", "POST", "/skills/install-release", ("source", "allow_stranger")),
    Operation("update_skills", "POST", "/skills/update", ("name", "approve")),
    Operation("set_cosign_policy", "PUT", "/skills/cosign-policy", ("required",)),
    Operation("publish_skill", "POST", "/skills/publish", ("source", "announce")),
    Operation("list_approvals", "GET", "/approvals"),
    Operation("decide_approval", "POST", "/approvals/decide", ("id", "decision")),
    Operation("pod_access", "GET", "/pod/access"),
    Operation(
        "set_pod_access", "PUT", "/pod/access", ("who", "container", "modes"), returns=NOTHING
    ),
    Operation("pod_list", "POST", "/pod/list", ("path",)),
    # metered inference (node.infer, node.ledger): under /send and /peers, served with them
    Operation("infer", "POST", "/send/infer", ("peer", "text", "max_tokens", "temperature")),
    Operation("usage", "POST", "/peers/usage", ("peer", "days")),
    # Contract Net (node.contracts_wire, _seller, _buyer): the kept conversations, the policy
    Operation("list_contracts", "GET", "/contracts"),
    Operation("set_contract_policy", "PUT", "/contracts/policy", ("did", "policy")),
    # a delegation runs in the background: started, watched (its bids as they come), awarded
    Operation(
        "start_delegation",
        "POST",
        "/contracts/delegations",
        ("task", "peers", "budget", "unit", "deadline", "pick", "kind"),
    ),
    Operation("delegation", "POST", "/contracts/delegation", ("conversation",)),
    Operation("award_delegation", "POST", "/contracts/delegation/award", ("conversation", "did")),
    # remote chat models (node.remote_models): OpenAI-compatible servers, their keys sealed
    Operation(
        "add_remote_model", "POST", "/models/remote", ("name", "url", "model", "key", "allow_peers")
    ),
    Operation("list_remote_models", "GET", "/models/remote"),
    Operation("remove_remote_model", "POST", "/models/remote/remove", ("name",), returns="removed"),
    # the inbox agent (node.inbox_agent): its items, drafts and the owner's rules
    Operation("inbox_items", "GET", "/inbox/items"),
    Operation("inbox_item", "POST", "/inbox/item", ("id",)),
    Operation("approve_draft", "POST", "/inbox/approve", ("id", "body")),
    Operation("discard_draft", "POST", "/inbox/discard", ("id",)),
    Operation("inbox_digest", "POST", "/inbox/digest", ("since",)),
    Operation("inbox_rules", "GET", "/inbox/rules"),
    Operation("add_inbox_rule", "POST", "/inbox/rules", ("rule",), send="body"),
    Operation("remove_inbox_rule", "POST", "/inbox/rules/remove", ("id",), returns="removed"),
)


class Owner(Protocol):
    """What the command line may ask of either owner; ``async`` where the local owner goes to
    the network (a peer's card, a peer's answer). Checked against `OPERATIONS` at import."""

    def add_grant(self, grant: dict) -> None: ...
    def list_grants(self) -> list[dict]: ...
    def remove_grant(self, did: str) -> bool: ...
    def create_token(self, name: str, allow: list[str]) -> str: ...
    def create_peer_token(self, name: str, peer: str) -> str: ...
    def list_tokens(self) -> list[dict]: ...
    def revoke_token(self, name: str) -> bool: ...
    async def add_peer(self, url: str, name: str) -> dict: ...
    def list_peers(self) -> list[dict]: ...
    async def send(self, peer: str, text: str) -> dict: ...
    def verify_audit(self) -> dict: ...
    def list_skills(self) -> list[dict]: ...
    def skill(self, name: str) -> dict: ...
    def install_skill(self, source: str) -> dict: ...
    def install_mcp(self, name: str, argv: list[str]) -> dict: ...
    def approve_skill(self, name: str, permissions: list[str]) -> dict: ...
    def enable_skill(self, name: str) -> dict: ...
    def disable_skill(self, name: str) -> dict: ...
    def remove_skill(self, name: str) -> dict: ...
    def review_skill(self, name: str, accept: list[str], accept_all: bool) -> dict: ...
    def set_tool_policy(self, tool: str, decision: str) -> dict: ...
    def search_skills(self, text: str) -> dict: ...
    def install_release(self, source: str, allow_stranger: bool) -> dict: ...
    def update_skills(self, name: str, approve: bool) -> list[dict]: ...
    def set_cosign_policy(self, required: int) -> dict: ...
    def publish_skill(self, source: str, announce: bool) -> dict: ...
    def list_approvals(self) -> list[dict]: ...
    def decide_approval(self, approval_id: str, decision: str) -> dict: ...
    def pod_access(self) -> dict: ...
    def set_pod_access(self, who: str, container: str, modes: list[str] | None) -> None: ...
    def pod_list(self, path: str) -> list[dict]: ...
    async def infer(self, peer: str, text: str, max_tokens: int, temperature: float) -> dict: ...
    def usage(self, peer: str | None, days: int) -> dict: ...
    def list_contracts(self) -> list[dict]: ...
    def set_contract_policy(self, did: str, policy: dict) -> dict: ...
    async def start_delegation(
        self,
        task: str,
        peers: list[str],
        budget: int,
        unit: str,
        deadline: int,
        pick: str,
        kind: str,
    ) -> dict: ...
    async def delegation(self, conversation: str) -> dict: ...
    async def award_delegation(self, conversation: str, did: str | None) -> dict: ...
    def add_remote_model(
        self, name: str, url: str, model: str, key: str | None, allow_peers: bool
    ) -> dict: ...
    def list_remote_models(self) -> list[dict]: ...
    def remove_remote_model(self, name: str) -> bool: ...
    def inbox_items(self) -> list[dict]: ...
    def inbox_item(self, item_id: str) -> dict: ...
    def approve_draft(self, item_id: str, body: str | None) -> dict: ...
    def discard_draft(self, item_id: str) -> dict: ...
    def inbox_digest(self, since: float) -> dict: ...
    def inbox_rules(self) -> list[dict]: ...
    def add_inbox_rule(self, rule: dict) -> dict: ...
    def remove_inbox_rule(self, rule_id: str) -> bool: ...


class LocalOwner:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.delegations = contracts_buyer.Delegations()  # rounds the owner watches (serve)

    def add_grant(self, grant: dict) -> None:
        ed25519_public_from_did_key(grant["did"])  # refuse a malformed DID before storing anything
        if (
            "pod" not in grant
        ):  # `flurry grants add` leaves the pod access given by `flurry pod grant` as it is
            kept = self.node.grants.get(grant["did"])
            grant = {**grant, "pod": kept.to_record()["pod"] if kept else {}}
        self.node.grants.add(Grant.from_record(grant))

    def list_grants(self) -> list[dict]:
        return [g.to_record() for g in self.node.grants.list()]

    def remove_grant(self, did: str) -> bool:
        return self.node.grants.remove(did)

    def create_token(self, name: str, allow: list[str]) -> str:
        return self.node.tokens.create(name, set(allow))

    def create_peer_token(self, name: str, peer: str) -> str:
        """A /v1 token for a peer's app that cannot sign: it acts as ``peer``, metered by its
        "infer" grant (node.infer)."""
        ed25519_public_from_did_key(peer)
        return self.node.tokens.create(name, {"infer"}, peer)

    def list_tokens(self) -> list[dict]:
        return [
            {"name": t.name, "allow": sorted(t.allow), "created_at": t.created_at, "peer": t.peer}
            for t in self.node.tokens.list()
        ]

    def revoke_token(self, name: str) -> bool:
        return self.node.tokens.revoke(name)

    async def add_peer(self, url: str, name: str) -> dict:
        try:
            card, did = await fetch_peer_card(url)
        except PeerError as e:
            raise OwnerError(str(e)) from None
        peer = add_peer(self.node.vault, url, did, name)
        nostr = link_peer_from_card(
            self.node.vault, card, did
        )  # its Nostr key, when the card proves one
        owner = link_owner(self.node.vault, card, did)  # its owner's DID, when the card proves it
        return {
            **asdict(peer),
            "card_name": card.get("name", ""),
            "card_description": card.get("description", ""),
            "nostr": nostr,
            "owner": owner,
        }

    def list_peers(self) -> list[dict]:
        return [asdict(p) for p in list_peers(self.node.vault)]

    async def send(self, peer: str, text: str, *, by: str | None = None) -> dict:
        """Ask a pinned peer; signed, and audited (node.peering.send_to_peer)."""
        return await send_to_peer(self.node, peer, text, by=by)

    def verify_audit(self) -> dict:
        report = self.node.audit.verify(
            lambda did: Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(did))
        )
        return {
            "ok": report.ok,
            "count": report.count,
            "problems": [str(p) for p in report.problems],
        }

    # --- skills ------------------------------------------------------------------------

    def _skill_json(self, info: SkillInfo, policy: ToolPolicy | None = None) -> dict:
        policy = policy or self.node.tool_policy()
        m = info.manifest
        pins = info.approved_pins()
        waiting = set(pins.pending) if pins else set()
        return {
            "name": info.name,
            "version": m.version if m else None,
            "description": m.description if m else "unmanaged MCP server: " + " ".join(info.argv),
            "author": m.author_did if m else None,
            "signed": bool(m and m.signature),
            "managed": info.managed,
            "approved": info.approved,
            "enabled": info.enabled,
            "requested": list(info.requested),
            "granted": list(info.granted),
            # An unmanaged server's tools are those it listed when it was registered.
            "tools": [
                {
                    "name": t["name"],
                    "description": t["description"],
                    "policy": policy.rule(t["name"]),
                    "input_schema": t["input_schema"],
                    "disabled": t["name"] in waiting,
                }
                # as approved (pinned), or as they ask to be approved
                for t in (pins.specs.values() if pins else info.approved_tools())
            ],
            # Tools changed or new since approval, disabled until reviewed (skills.tool_pins).
            "review": tool_review(pins),
        }

    def _info(self, name: str) -> SkillInfo:
        try:
            return self.node.skills.info(name)
        except UnknownSkill as e:
            raise NotFound(str(e)) from None

    def list_skills(self) -> list[dict]:
        policy = self.node.tool_policy()
        return [self._skill_json(info, policy) for info in self.node.skills.list()]

    def skill(self, name: str) -> dict:
        # Only here, not in the listing: asking the runner what it can enforce starts a process.
        return {**self._skill_json(self._info(name)), "sandbox": self.node.skills.sandbox(name)}

    def install_skill(self, source: str) -> dict:
        manifest = self.node.skills.install(source)
        return self._skill_json(self.node.skills.info(manifest.name))

    def install_mcp(self, name: str, argv: list[str]) -> dict:
        return self._skill_json(self.node.skills.install_mcp(name, [str(a) for a in argv]))

    def approve_skill(self, name: str, permissions: list[str]) -> dict:
        self._info(name)
        self.node.stop_skill(name)  # a running process keeps what it was started with
        return self._skill_json(self.node.skills.approve(name, [str(p) for p in permissions]))

    def enable_skill(self, name: str) -> dict:
        self._info(name)
        return self._skill_json(self.node.skills.enable(name))

    def disable_skill(self, name: str) -> dict:
        self._info(name)
        self.node.stop_skill(name)
        return self._skill_json(self.node.skills.disable(name))

    def remove_skill(self, name: str) -> dict:
        info = self._info(name)
        self.node.stop_skill(name)
        self.node.skills.remove(name)
        # A skill installed again later starts from "ask", not from what the owner allowed before.
        for tool in info.manifest.tools if info.manifest else ():
            self.node.forget_tool_policy(tool.name)
        return {"removed": True}

    def review_skill(self, name: str, accept: list[str], accept_all: bool) -> dict:
        """Pin the new versions of the tools in ``accept`` (all waiting, with ``accept_all``),
        which the owner reviewed; with neither, start the skill once to list its tools now."""
        info = self._info(name)
        self.node.stop_skill(name)  # it starts again with the pins as they are now
        if accept_all or accept:
            info = self.node.skills.review_tools(
                name, None if accept_all else [str(a) for a in accept]
            )
        elif info.approved and info.enabled:
            info = self.node.skills.check_tools(name)
        return self._skill_json(info)

    def set_tool_policy(self, tool: str, decision: str) -> dict:
        self.node.set_tool_policy(str(tool), str(decision))
        return {"ok": True}

    # --- shared skills: node.skill_search, node.skill_install -----------------------------

    def search_skills(self, text: str) -> dict:
        return skill_search.search(self.node.vault, text).to_json()

    def install_release(self, source: str, allow_stranger: bool) -> dict:
        info = skill_install.install_release(self.node, source, allow_stranger)
        return {**self._skill_json(info), "origin": info.origin}

    def update_skills(self, name: str, approve: bool) -> list[dict]:
        return skill_install.update_skills(self.node, name, approve)

    def set_cosign_policy(self, required: int) -> dict:
        return {"required": skill_install.set_cosign_policy(self.node.vault, required)}

    def publish_skill(self, source: str, announce: bool) -> dict:
        """A signed release of the skill at ``source`` in the pod (node.skill_publish)."""
        if not isinstance(announce, bool):
            raise OwnerError(f"announce must be true or false, not {announce!r}")
        return publish_skill(self.node, str(source), announce=announce).to_json()

    # --- tool calls waiting for the owner ------------------------------------------------

    def list_approvals(self) -> list[dict]:
        return [p.to_json() for p in self.node.approvals.pending()]

    def decide_approval(self, approval_id: str, decision: str) -> dict:
        if decision not in ("approve", "deny"):
            raise OwnerError(f"decision must be approve or deny, not {decision!r}")
        try:
            self.node.approvals.decide(str(approval_id), decision == "approve")
        except UnknownApproval as e:
            raise NotFound(e.args[0]) from None
        return {"ok": True}

    def pod_access(self) -> dict:
        """Who may do what in the pod: {"public": {container: modes}, "grants": {did: {container: modes}}}."""
        return {
            "public": {c: sorted(m) for c, m in self.node.grants.public_rules().items()},
            "grants": {g.did: g.to_record()["pod"] for g in self.node.grants.list() if g.pod},
        }

    def set_pod_access(self, who: str, container: str, modes: list[str] | None) -> None:
        """``who`` (a DID, or "public") gets ``modes`` on ``container`` and below; None drops the rule."""
        if who == "public":
            self.node.grants.set_public_modes(container, modes)
            return
        ed25519_public_from_did_key(who)
        self.node.grants.set_pod_modes(who, container, modes)

    async def infer(self, peer: str, text: str, max_tokens: int, temperature: float) -> dict:
        return await infer_at_peer(
            self.node, peer, text, max_tokens=max_tokens, temperature=temperature
        )

    def usage(self, peer: str | None, days: int) -> dict:
        # With the Contract Net balances (node.contracts_wire), recomputed from the conversations.
        return {
            **ledger_usage(self.node.vault, peer=peer, days=days),
            "balances": contracts_wire.balances(self.node.vault),
        }

    def list_contracts(self) -> list[dict]:
        return [contracts_wire.summary(r) for r in contracts_wire.kept(self.node.vault)]

    def set_contract_policy(self, did: str, policy: dict) -> dict:
        ed25519_public_from_did_key(did)
        try:
            return contracts_seller.set_policy(self.node, did, policy)
        except ValueError as error:
            raise OwnerError(f"contract policy: {error}") from None

    async def start_delegation(
        self,
        task: str,
        peers: list[str],
        budget: int,
        unit: str,
        deadline: int,
        pick: str,
        kind: str,
    ) -> dict:
        """Start a round (node.contracts_buyer.Delegations); watch it with `delegation`."""
        if not isinstance(task, str) or not task.strip():
            raise OwnerError("say what the task is")
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise OwnerError("peers is a list of pinned peers' names or DIDs")
        for name, value in (("budget", budget), ("deadline", deadline)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OwnerError(f"{name} is a whole number")
        return self.delegations.start(
            self.node,
            task,
            peers,
            budget=budget,
            unit=str(unit),
            deadline=deadline,
            pick=str(pick),
            kind=str(kind),
        ).view()

    # Both on the event loop (async), where the round runs: its state is changed only there.
    async def delegation(self, conversation: str) -> dict:
        return self.delegations.get(str(conversation)).view()

    async def award_delegation(self, conversation: str, did: str | None) -> dict:
        """Award the round to the bidder ``did``, or to nobody (None)."""
        return self.delegations.award(str(conversation), did or None).view()

    # --- remote chat models (node.remote_models) -------------------------------------------

    def add_remote_model(
        self, name: str, url: str, model: str, key: str | None, allow_peers: bool
    ) -> dict:
        return remote_models.add(
            self.node.vault, str(name), str(url), str(model or ""), key, bool(allow_peers)
        )

    def list_remote_models(self) -> list[dict]:
        return remote_models.listed(self.node.vault)

    def remove_remote_model(self, name: str) -> bool:
        if self.node.config.chat_model == remote_models.PREFIX + str(name):
            raise OwnerError(
                f"{name} is the chat model in use: `flurry models use chat …` another first"
            )
        return remote_models.remove(self.node.vault, str(name))

    # --- the inbox agent (node.inbox_agent) ----------------------------------------------

    def inbox_items(self) -> list[dict]:
        return self.node.inbox.items()

    def inbox_item(self, item_id: str) -> dict:
        return self.node.inbox.item(str(item_id))

    def approve_draft(self, item_id: str, body: str | None) -> dict:
        """Send the draft (or ``body``, the owner's edit) to the item's sender, and only there."""
        if body is not None and not isinstance(body, str):
            raise OwnerError("body is the reply's text")
        return self.node.inbox.approve(str(item_id), body)

    def discard_draft(self, item_id: str) -> dict:
        return self.node.inbox.discard(str(item_id))

    def inbox_digest(self, since: float) -> dict:
        if isinstance(since, bool) or not isinstance(since, int | float) or since <= 0:
            raise OwnerError("since is a number of seconds greater than 0")
        return self.node.inbox.digest(float(since))

    def inbox_rules(self) -> list[dict]:
        return [r.to_record() for r in self.node.inbox.rules()]

    def add_inbox_rule(self, rule: dict) -> dict:
        """A rule: {match: did|sender|domain|label, value, action, tags, per_day}; a Nostr
        sender may be named by its npub."""
        match, value = str(rule.get("match", "")), str(rule.get("value", ""))
        if match == "sender" and value.strip().lower().startswith("npub1"):
            try:
                value = parse_public_key(value.strip()).hex()
            except ValueError:
                raise OwnerError(f"{value!r} is not a Nostr public key") from None
        tags = rule.get("tags") or []
        if not isinstance(tags, list):
            raise OwnerError("tags is a list of vault tags")
        return self.node.inbox.add_rule(
            match,
            value,
            str(rule.get("action", "")),
            [str(t) for t in tags],
            rule.get("per_day", DEFAULT_PER_DAY),
        ).to_record()

    def remove_inbox_rule(self, rule_id: str) -> bool:
        return self.node.inbox.remove_rule(str(rule_id))

    def pod_list(self, path: str) -> list[dict]:
        try:
            entry = self.node.pod.get(path)
        except PodError as e:
            raise OwnerError(str(e)) from None
        if entry is None:
            raise OwnerError(f"nothing at {path}")
        if not entry.is_container:
            return [
                {
                    "path": path,
                    "type": entry.content_type,
                    "size": entry.size,
                    "modified": entry.modified,
                }
            ]
        found = [self.node.pod.get(path + member) for member in entry.members]
        return [
            {"path": e.path, "type": e.content_type, "size": e.size, "modified": e.modified}
            for e in found
            if e
        ]


class RemoteOwner:
    """The same calls, sent to the running node over its signed API; one method per row of
    `OPERATIONS`, made below, async where `LocalOwner`'s is."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def _call(self, method: str, path: str, **kwargs) -> object:
        response = self._http.request(method, OWNER_PREFIX + path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise OwnerError(f"the node answered {response.status_code}: {detail}")
        return response.json()

    def _operate(self, operation: Operation, args: tuple) -> object:
        fields = dict(zip(operation.fields, args, strict=True))
        if operation.send == "body":
            kwargs = {"json": args[0]}
        elif operation.send == "query":
            kwargs = {"params": fields}
        else:
            kwargs = {"json": fields} if fields else {}
        answer = self._call(operation.method, operation.path, **kwargs)
        if operation.returns is NOTHING:
            return None
        if operation.returns is None:
            return answer
        assert isinstance(answer, dict)  # the row names a field of the JSON object the node answers
        return answer[operation.returns]


def _remote_method(operation: Operation, is_async: bool) -> Callable[..., object]:
    async def call_async(self: RemoteOwner, *args: object) -> object:
        return await asyncio.to_thread(self._operate, operation, args)

    def call_sync(self: RemoteOwner, *args: object) -> object:
        return self._operate(operation, args)

    # the same shape as the local owner's: the caller awaits either
    call: Callable[..., object] = call_async if is_async else call_sync
    call.__name__ = call.__qualname__ = operation.name
    call.__doc__ = f"{operation.method} {OWNER_PREFIX}{operation.path}"
    return call


def _positional(function) -> list[str]:
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
    ]


def check_table(operations: tuple[Operation, ...], local: type, protocol: type) -> None:
    """``operations``, ``protocol`` and ``local`` name the same operations, with the same
    arguments and the same async-ness; raises (at import) when one of them was forgotten."""
    declared = {o.name for o in operations}
    promised = {
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and callable(value)
    }
    if declared != promised:
        raise TypeError(
            f"{protocol.__name__}: the table and the protocol differ: {sorted(declared ^ promised)}"
        )
    for operation in operations:
        method, line = getattr(local, operation.name, None), getattr(protocol, operation.name)
        if method is None:
            raise TypeError(f"{local.__name__} has no {operation.name}")
        if len(_positional(method)) != len(operation.fields) or _positional(method) != _positional(
            line
        ):
            raise TypeError(
                f"{local.__name__}.{operation.name} takes {_positional(method)}, the table says {operation.fields}"
            )
        if inspect.iscoroutinefunction(method) != inspect.iscoroutinefunction(line):
            raise TypeError(
                f"{operation.name} is async in one of {local.__name__} and {protocol.__name__} only"
            )


def make_remote(remote: type, local: type, operations: tuple[Operation, ...]) -> None:
    """Give ``remote`` (a class with ``_operate``) one method per row, async where ``local``'s is."""
    for operation in operations:
        setattr(
            remote,
            operation.name,
            _remote_method(operation, inspect.iscoroutinefunction(getattr(local, operation.name))),
        )


def check_operations() -> None:
    check_table(OPERATIONS, LocalOwner, Owner)


check_operations()
make_remote(RemoteOwner, LocalOwner, OPERATIONS)
