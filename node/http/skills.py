"""The owner's skills over the signed API: list, inspect, install (a project or an MCP
server), approve permissions, enable, disable, remove, and the per-tool policy. Owner only
(declared where the router is included); each route is one LocalOwner operation.
"""

from __future__ import annotations

from fastapi import APIRouter

from node.http.calls import BodyDep, owner_call, required
from node.http.state import OwnerDep

router = APIRouter()


@router.get("/api/owner/skills")
async def owner_skills(body: BodyDep, owner: OwnerDep) -> list:
    return await owner_call(owner.list_skills)


@router.get("/api/owner/skills/info")
async def owner_skill(name: str, body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.skill, name)


@router.post("/api/owner/skills/install")
async def owner_install_skill(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.install_skill, str(required(body, "source")))


@router.post("/api/owner/skills/install-mcp")
async def owner_install_mcp(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(
        owner.install_mcp, str(required(body, "name")), list(required(body, "argv"))
    )


@router.post("/api/owner/skills/approve")
async def owner_approve_skill(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(
        owner.approve_skill, str(required(body, "name")), list(body.get("permissions", []))
    )


@router.post("/api/owner/skills/enable")
async def owner_enable_skill(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.enable_skill, str(required(body, "name")))


@router.post("/api/owner/skills/disable")
async def owner_disable_skill(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.disable_skill, str(required(body, "name")))


@router.post("/api/owner/skills/remove")
async def owner_remove_skill(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.remove_skill, str(required(body, "name")))


@router.put("/api/owner/skills/policy")
async def owner_tool_policy(body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(
        owner.set_tool_policy, required(body, "tool"), required(body, "decision")
    )
