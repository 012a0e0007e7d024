"""The owner's skills over the signed API: list, inspect, install (a project or an MCP
server), approve permissions, enable, disable, remove, and the per-tool policy. Owner only
(declared where the router is included); each route is one LocalOwner operation, made from
its row of node.owner.OPERATIONS (node.http.calls.serve_operations).
"""

from __future__ import annotations

from fastapi import APIRouter

from node.http.calls import BodyDep, fields_or_defaults, owner_call, serve_operations
from node.http.state import OwnerDep, get_owner
from node.owner import OPERATIONS

router = APIRouter()


def _flag_named(field: str):
    def flag(value: object) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{field} must be true or false")
        return value

    return flag


_flag = _flag_named("accept_all")


# Hand-written: its one argument is in the query string, where FastAPI reads and checks it.
@router.get("/api/owner/skills/info")
async def owner_skill(name: str, body: BodyDep, owner: OwnerDep) -> dict:
    return await owner_call(owner.skill, name)


serve_operations(
    router,
    tuple(o for o in OPERATIONS if o.path.startswith("/skills") and o.send != "query"),
    get_owner,
    fields_or_defaults(
        {
            ("approve_skill", "permissions"): [],
            ("review_skill", "accept"): [],
            ("review_skill", "accept_all"): False,
            ("search_skills", "text"): "",
            ("install_release", "allow_stranger"): False,
            ("update_skills", "name"): "",
            ("update_skills", "approve"): False,
        },
        # names and sources as text, lists as lists, whatever JSON the request sent
        convert={
            "name": str,
            "source": str,
            "argv": list,
            "permissions": list,
            "accept": list,
            "accept_all": _flag,
            "text": str,
            "allow_stranger": _flag_named("allow_stranger"),
            "approve": _flag_named("approve"),
            "required": int,
        },
    ),
)
