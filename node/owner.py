"""What the owner manages: grants, tokens, peers, sends, skills, tool approvals and the
audit log — in one place.

`LocalOwner` does it on an open node; the API exposes the same object to the owner's
signed requests (/api/owner/...), and `RemoteOwner` is the command line's client of those
routes, used while `flurry serve` holds the home. Values cross as plain JSON-able dicts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.approvals import UnknownApproval
from agent.grants import Grant
from agent.tools import ToolPolicy
from identity.did_key import ed25519_public_from_did_key
from node.errors import NotFound, OwnerError
from node.nostr_peers import link_peer_from_card
from skills.registry import SkillInfo, UnknownSkill
from node.peering import send_to_peer
from node.peers import PeerError, add_peer, fetch_peer_card, list_peers
from store.pod_store import PodError

if TYPE_CHECKING:  # annotations only: node.node builds the skills' broker on node.skill_capabilities, which uses this
    from node.node import Node

__all__ = ["LocalOwner", "NotFound", "Owner", "OwnerError", "RemoteOwner"]  # the errors live in node.errors


class Owner(Protocol):
    def add_grant(self, grant: dict) -> None: ...
    def list_grants(self) -> list[dict]: ...
    def remove_grant(self, did: str) -> bool: ...
    def create_token(self, name: str, allow: list[str]) -> str: ...
    def list_tokens(self) -> list[dict]: ...
    def revoke_token(self, name: str) -> bool: ...
    def add_peer(self, url: str, name: str) -> dict: ...
    def list_peers(self) -> list[dict]: ...
    def send(self, peer: str, text: str) -> dict: ...
    def verify_audit(self) -> dict: ...
    def list_skills(self) -> list[dict]: ...
    def skill(self, name: str) -> dict: ...
    def install_skill(self, source: str) -> dict: ...
    def install_mcp(self, name: str, argv: list[str]) -> dict: ...
    def approve_skill(self, name: str, permissions: list[str]) -> dict: ...
    def enable_skill(self, name: str) -> dict: ...
    def disable_skill(self, name: str) -> dict: ...
    def remove_skill(self, name: str) -> dict: ...
    def set_tool_policy(self, tool: str, decision: str) -> dict: ...
    def list_approvals(self) -> list[dict]: ...
    def decide_approval(self, approval_id: str, decision: str) -> dict: ...
    def pod_access(self) -> dict: ...
    def set_pod_access(self, who: str, container: str, modes: list[str] | None) -> None: ...
    def pod_list(self, path: str) -> list[dict]: ...


class LocalOwner:
    def __init__(self, node: Node) -> None:
        self.node = node

    def add_grant(self, grant: dict) -> None:
        ed25519_public_from_did_key(grant["did"])  # refuse a malformed DID before storing anything
        if "pod" not in grant:  # `flurry grants add` leaves the pod access given by `flurry pod grant` as it is
            kept = self.node.grants.get(grant["did"])
            grant = {**grant, "pod": kept.to_record()["pod"] if kept else {}}
        self.node.grants.add(Grant.from_record(grant))

    def list_grants(self) -> list[dict]:
        return [g.to_record() for g in self.node.grants.list()]

    def remove_grant(self, did: str) -> bool:
        return self.node.grants.remove(did)

    def create_token(self, name: str, allow: list[str]) -> str:
        return self.node.tokens.create(name, set(allow))

    def list_tokens(self) -> list[dict]:
        return [{"name": t.name, "allow": sorted(t.allow), "created_at": t.created_at} for t in self.node.tokens.list()]

    def revoke_token(self, name: str) -> bool:
        return self.node.tokens.revoke(name)

    async def add_peer(self, url: str, name: str) -> dict:
        try:
            card, did = await fetch_peer_card(url)
        except PeerError as e:
            raise OwnerError(str(e)) from None
        peer = add_peer(self.node.vault, url, did, name)
        nostr = link_peer_from_card(self.node.vault, card, did)  # its Nostr key, when the card proves one
        return {**asdict(peer), "card_name": card.get("name", ""), "card_description": card.get("description", ""), "nostr": nostr}

    def list_peers(self) -> list[dict]:
        return [asdict(p) for p in list_peers(self.node.vault)]

    async def send(self, peer: str, text: str, *, by: str | None = None) -> dict:
        """Ask a pinned peer; signed, and audited (node.peering.send_to_peer)."""
        return await send_to_peer(self.node, peer, text, by=by)

    def verify_audit(self) -> dict: ...
    def list_skills(self) -> list[dict]: ...
    def skill(self, name: str) -> dict: ...
    def install_skill(self, source: str) -> dict: ...
    def install_mcp(self, name: str, argv: list[str]) -> dict: ...
    def approve_skill(self, name: str, permissions: list[str]) -> dict: ...
    def enable_skill(self, name: str) -> dict: ...
    def disable_skill(self, name: str) -> dict: ...
    def remove_skill(self, name: str) -> dict: ...
    def set_tool_policy(self, tool: str, decision: str) -> dict: ...
    def list_approvals(self) -> list[dict]: ...
    def decide_approval(self, approval_id: str, decision: str) -> dict: ...
    def pod_access(self) -> dict: ...
    def set_pod_access(self, who: str, container: str, modes: list[str] | None) -> None: ...
    def pod_list(self, path: str) -> list[dict]: ...


class LocalOwner:
    def __init__(self, node: Node) -> None:
        self.node = node

    def add_grant(self, grant: dict) -> None:
        ed25519_public_from_did_key(grant["did"])  # refuse a malformed DID before storing anything
        if "pod" not in grant:  # `flurry grants add` leaves the pod access given by `flurry pod grant` as it is
            kept = self.node.grants.get(grant["did"])
            grant = {**grant, "pod": kept.to_record()["pod"] if kept else {}}
        self.node.grants.add(Grant.from_record(grant))

    def list_grants(self) -> list[dict]:
        return [g.to_record() for g in self.node.grants.list()]

    def remove_grant(self, did: str) -> bool:
        return self.node.grants.remove(did)

    def create_token(self, name: str, allow: list[str]) -> str:
        return self.node.tokens.create(name, set(allow))

    def list_tokens(self) -> list[dict]:
        return [{"name": t.name, "allow": sorted(t.allow), "created_at": t.created_at} for t in self.node.tokens.list()]

    def revoke_token(self, name: str) -> bool:
        return self.node.tokens.revoke(name)

    async def add_peer(self, url: str, name: str) -> dict:
        try:
            card, did = await fetch_peer_card(url)
        except PeerError as e:
            raise OwnerError(str(e)) from None
        peer = add_peer(self.node.vault, url, did, name)
        nostr = link_peer_from_card(self.node.vault, card, did)  # its Nostr key, when the card proves one
        return {**asdict(peer), "card_name": card.get("name", ""), "card_description": card.get("description", ""), "nostr": nostr}

    def list_peers(self) -> list[dict]:
        return [asdict(p) for p in list_peers(self.node.vault)]

    async def send(self, peer: str, text: str, *, by: str | None = None) -> dict:
        """Ask a pinned peer; signed by the node key, and every attempt lands in the audit log
        (with the skill that asked, when ``by`` names one)."""
        pinned = find_peer(self.node.vault, peer)
        if pinned is None:
            raise OwnerError(f"no pinned peer {peer!r}; add it first: flurry peers add URL --name NAME")
        keys = self.node.keys
        reply: PeerReply | None = None
        failure: PeerError | None = None
        try:
            reply = await send_message(
                pinned.url,
                text,
                key=keys.node_key,
                keyid=verification_method_id(keys.node_did),
                owner_did=keys.owner_did,
                pinned_did=pinned.did,
            )
        except PeerError as e:
            failure = e
        # Attempts are recorded too: a refusal, or a card signed by another DID, is worth an owner's look.
        details = {
            "peer_did": pinned.did,
            "task_id": reply.task_id if reply else None,
            "state": reply.state if reply else "failed",
            "question": text,
            **({"skill": by} if by else {}),
        }
        if failure is not None:
            details["error"] = str(failure)
        try:
            self.node.audit.append("a2a.send", target=pinned.url, details=details)
        except AuditError as e:
            raise OwnerError(f"{'sent' if reply else 'tried to send'}, but the audit log could not record it: {e}") from None
        if failure is not None:
            raise OwnerError(str(failure))
        assert reply is not None
        if reply.state not in ("TASK_STATE_COMPLETED", "message"):
            raise OwnerError(f"{pinned.label} did not answer: {reply.state}" + (f": {reply.note}" if reply.note else ""))
        return asdict(reply)

    def verify_audit(self) -> dict:
        report = self.node.audit.verify(lambda did: Ed25519PublicKey.from_public_bytes(ed25519_public_from_did_key(did)))
        return {"ok": report.ok, "count": report.count, "problems": [str(p) for p in report.problems]}

    # --- skills ------------------------------------------------------------------------

    def _skill_json(self, info: SkillInfo, policy: ToolPolicy | None = None) -> dict:
        policy = policy or self.node.tool_policy()
        m = info.manifest
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
            "tools": [{"name": t.name, "description": t.description, "policy": policy.rule(t.name)} for t in m.tools]
            if m else [{"name": t["name"], "description": t["description"], "policy": policy.rule(t["name"])}
                       for t in info.tools],
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

    def set_tool_policy(self, tool: str, decision: str) -> dict:
        self.node.set_tool_policy(str(tool), str(decision))
        return {"ok": True}

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

    def pod_list(self, path: str) -> list[dict]:
        try:
            entry = self.node.pod.get(path)
        except PodError as e:
            raise OwnerError(str(e)) from None
        if entry is None:
            raise OwnerError(f"nothing at {path}")
        if not entry.is_container:
            return [{"path": path, "type": entry.content_type, "size": entry.size, "modified": entry.modified}]
        found = [self.node.pod.get(path + member) for member in entry.members]
        return [{"path": e.path, "type": e.content_type, "size": e.size, "modified": e.modified} for e in found if e]


class RemoteOwner:
    """The same calls, sent to the running node over its signed API."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def _call(self, method: str, path: str, **kwargs) -> object:
        response = self._http.request(method, "/api/owner" + path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise OwnerError(f"the node answered {response.status_code}: {detail}")
        return response.json()

    def add_grant(self, grant: dict) -> None:
        self._call("PUT", "/grants", json=grant)

    def list_grants(self) -> list[dict]:
        return self._call("GET", "/grants")

    def remove_grant(self, did: str) -> bool:
        return self._call("POST", "/grants/remove", json={"did": did})["removed"]

    def create_token(self, name: str, allow: list[str]) -> str:
        return self._call("POST", "/tokens", json={"name": name, "allow": allow})["token"]

    def list_tokens(self) -> list[dict]:
        return self._call("GET", "/tokens")

    def revoke_token(self, name: str) -> bool:
        return self._call("POST", "/tokens/revoke", json={"name": name})["revoked"]

    def add_peer(self, url: str, name: str) -> dict:
        return self._call("POST", "/peers", json={"url": url, "name": name})

    def list_peers(self) -> list[dict]:
        return self._call("GET", "/peers")

    def send(self, peer: str, text: str) -> dict:
        return self._call("POST", "/send", json={"peer": peer, "text": text})

    def verify_audit(self) -> dict:
        return self._call("GET", "/audit")

    def list_skills(self) -> list[dict]:
        return self._call("GET", "/skills")

    def skill(self, name: str) -> dict:
        return self._call("GET", "/skills/info", params={"name": name})

    def install_skill(self, source: str) -> dict:
        return self._call("POST", "/skills/install", json={"source": source})

    def install_mcp(self, name: str, argv: list[str]) -> dict:
        return self._call("POST", "/skills/install-mcp", json={"name": name, "argv": argv})

    def approve_skill(self, name: str, permissions: list[str]) -> dict:
        return self._call("POST", "/skills/approve", json={"name": name, "permissions": permissions})

    def enable_skill(self, name: str) -> dict:
        return self._call("POST", "/skills/enable", json={"name": name})

    def disable_skill(self, name: str) -> dict:
        return self._call("POST", "/skills/disable", json={"name": name})

    def remove_skill(self, name: str) -> dict:
        return self._call("POST", "/skills/remove", json={"name": name})

    def set_tool_policy(self, tool: str, decision: str) -> dict:
        return self._call("PUT", "/skills/policy", json={"tool": tool, "decision": decision})

    def list_approvals(self) -> list[dict]:
        return self._call("GET", "/approvals")

    def decide_approval(self, approval_id: str, decision: str) -> dict:
        return self._call("POST", "/approvals/decide", json={"id": approval_id, "decision": decision})
    def pod_access(self) -> dict:
        return self._call("GET", "/pod/access")

    def set_pod_access(self, who: str, container: str, modes: list[str] | None) -> None:
        self._call("PUT", "/pod/access", json={"who": who, "container": container, "modes": modes})

    def pod_list(self, path: str) -> list[dict]:
        return self._call("POST", "/pod/list", json={"path": path})
