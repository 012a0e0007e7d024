"""The ledger: every model job served for a peer, and every job a peer served for this node.

One sealed record per job in the vault (kind ``ledger``, key = the job's id), so peers' DIDs
and counts never reach the disk in the clear:

    {id, peer, direction, channel, model, model_sha256, prompt_tokens, completion_tokens,
     at, receipt_id}

``direction`` is "served" (this node's model ran a peer's prompt: node.infer writes it when
the job ends, from the same count that settled the peer's token quota and that the peer was
told) or "used" (a peer's model ran this node's prompt: written by the requester from the
usage the provider reported with its answer). ``receipt_id`` stays None until receipts are
attached (issue 15's receipts); it is where a job's receipt will be found.

`summary` folds the entries per peer and per UTC day, both ways: what `flurry usage` shows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

from node.errors import OwnerError
from store.records import Records

KIND = "ledger"
Direction = Literal["served", "used"]
DIRECTIONS: tuple[Direction, ...] = ("served", "used")


@dataclass(frozen=True)
class Entry:
    peer: str  # the peer's DID: who was served, or who served us
    direction: Direction
    channel: str  # "a2a" or "v1"
    model: str  # the model file's name
    model_sha256: str | None
    prompt_tokens: int
    completion_tokens: int
    at: float = field(default_factory=time.time)
    receipt_id: str | None = None  # the receipt of the job (agent.receipts), when it had one
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"a ledger entry is 'served' or 'used', not {self.direction!r}")
        for name in ("prompt_tokens", "completion_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number, 0 or more, not {value!r}")

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def day(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.at))


class Ledger:
    """The node's ledger in the vault. Each entry is its own record, written once: no
    read-modify-write, so no lock is needed between the threads that record jobs."""

    def __init__(self, records: Records) -> None:
        self._records = records

    def record(self, entry: Entry) -> Entry:
        self._records.put_record(KIND, entry.id, asdict(entry))
        return entry

    def entries(
        self,
        *,
        peer: str | None = None,
        since: float | None = None,
        direction: Direction | None = None,
    ) -> list[Entry]:
        found = (Entry(**value) for _, value in self._records.records(KIND))
        return sorted(
            (
                e
                for e in found
                if (peer is None or e.peer == peer)
                and (since is None or e.at >= since)
                and (direction is None or e.direction == direction)
            ),
            key=lambda e: e.at,
        )


def summary(entries: Iterable[Entry]) -> list[dict]:
    """Per peer, per UTC day and direction: jobs, prompt and completion tokens (sorted by
    day, then peer, then direction)."""
    rows: dict[tuple[str, str, str], dict] = {}
    for e in entries:
        row = rows.setdefault(
            (e.day, e.peer, e.direction),
            {
                "day": e.day,
                "peer": e.peer,
                "direction": e.direction,
                "jobs": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
            },
        )
        row["jobs"] += 1
        row["prompt_tokens"] += e.prompt_tokens
        row["completion_tokens"] += e.completion_tokens
    return [rows[k] for k in sorted(rows)]


def usage(records: Records, *, peer: str | None = None, days: int = 30) -> dict:
    """What `flurry usage` shows: the last ``days`` UTC days (today included), per day and
    peer, both ways, and the totals per direction."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
        raise OwnerError(f"days must be a whole number from 1 to 3660, not {days!r}")
    today = time.time() // 86400 * 86400
    entries = Ledger(records).entries(peer=peer, since=today - (days - 1) * 86400)
    rows = summary(entries)
    totals = {
        d: {
            "jobs": sum(r["jobs"] for r in rows if r["direction"] == d),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows if r["direction"] == d),
            "completion_tokens": sum(r["completion_tokens"] for r in rows if r["direction"] == d),
        }
        for d in DIRECTIONS
    }
    return {"days": days, "peer": peer, "rows": rows, "totals": totals}
