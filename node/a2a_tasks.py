"""A2A tasks kept sealed in the vault, and bounded: a peer can read its answer after the node
restarts, and no peer can make the node keep tasks without end.

The a2a-sdk's in-memory store serves reads and lists (its own filtering and paging, scoped by
the caller's DID); this store writes through to the vault's sealed ``records`` table. A task
is sealed when its state changes, not on every streamed piece of its answer: a task is saved
once per piece while it works, and those pieces are in the task sealed when it completes.

Bounds: at most ``per_caller`` tasks per DID and ``total`` in all; past either, the oldest
(by when they were created) are forgotten, in memory and in the vault in the same step. A task
that was still working when the node stopped cannot finish (its model job died with the
process): at start it is loaded as failed, saying so.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter, OrderedDict

from a2a.auth.user import User
from a2a.helpers import new_text_message
from a2a.server.context import ServerCallContext
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.types import ListTasksRequest, ListTasksResponse, Task, TaskState

from store.vault import Vault

KIND = "a2a-task"
MAX_TASKS_PER_CALLER = 100
MAX_TASKS = 2000
_FINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)

# Keys of kept tasks, (owner DID, task id). A module-level name, since inside SealedTaskStore
# its own ``list`` method hides the built-in from the annotations.
TaskKeys = list[tuple[str, str]]


class Caller(User):
    """The verified DID, as the SDK's user: the SDK's stores scope tasks by ``user_name``."""

    def __init__(self, did: str) -> None:
        self._did = did

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._did


class SealedTaskStore(TaskStore):
    def __init__(
        self, vault: Vault, *, per_caller: int = MAX_TASKS_PER_CALLER, total: int = MAX_TASKS
    ) -> None:
        self._vault = vault
        self._per_caller, self._total = per_caller, total
        self._memory = InMemoryTaskStore()
        # (DID, task id) → the state last sealed, oldest task first: what eviction reads.
        self._kept: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._count: Counter[str] = Counter()
        self._lock = (
            asyncio.Lock()
        )  # one sealed write at a time: a task and its eviction stay in step
        self._loaded = False

    async def _ready(self) -> None:
        """Read the sealed tasks back, once, before the first use."""
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            records = await asyncio.to_thread(self._vault.records, KIND)
            puts = []
            for key, value in records:  # in the order they were first sealed: oldest first
                owner, task = value["owner"], Task.FromString(base64.b64decode(value["task"]))
                if task.status.state not in _FINAL:
                    task.status.state = TaskState.TASK_STATE_FAILED
                    task.status.message.CopyFrom(
                        new_text_message(
                            "the node restarted before this answer was finished; ask again",
                            context_id=task.context_id,
                            task_id=task.id,
                        )
                    )
                    task.status.timestamp.GetCurrentTime()
                    puts.append((KIND, key, _record(owner, task)))
                await self._memory.save(task, _context(owner))
                self._kept[(owner, task.id)] = task.status.state
                self._count[owner] += 1
            # The bounds may have been lowered since these were sealed.
            evicted = self._make_room()
            await self._forget_in_memory(evicted)
            if puts or evicted:
                await asyncio.to_thread(
                    self._vault.write_records, puts, [(KIND, _key(*key)) for key in evicted]
                )
            self._loaded = True

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await self._ready()
        owner = context.user.user_name
        async with self._lock:
            await self._memory.save(task, context)
            key = (owner, task.id)
            if self._kept.get(key) == task.status.state:
                return  # another piece of a working answer: sealed with the next state
            evicted: TaskKeys = []
            if key not in self._kept:
                self._count[owner] += 1
                self._kept[key] = task.status.state
                evicted = self._make_room(keep=key)
                await self._forget_in_memory(evicted)
            self._kept[key] = task.status.state
            deletes = [(KIND, _key(*key)) for key in evicted]
            await asyncio.to_thread(
                self._vault.write_records,
                [(KIND, _key(owner, task.id), _record(owner, task))],
                deletes,
            )

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        await self._ready()
        return await self._memory.get(task_id, context)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        await self._ready()
        return await self._memory.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        await self._ready()
        owner = context.user.user_name
        async with self._lock:
            await self._memory.delete(task_id, context)
            if (owner, task_id) in self._kept:
                self._forget((owner, task_id))
                await asyncio.to_thread(self._vault.delete_record, KIND, _key(owner, task_id))

    def _make_room(self, keep: tuple[str, str] | None = None) -> TaskKeys:
        """Forget the oldest tasks past the bounds (never ``keep``, the one being saved);
        returns their keys, for the caller to drop from memory and the vault."""
        evicted: TaskKeys = []
        for owner in [did for did, n in self._count.items() if n > self._per_caller]:
            mine = [key for key in self._kept if key[0] == owner and key != keep]
            for key in mine[: self._count[owner] - self._per_caller]:
                evicted.append(self._forget(key))
        while len(self._kept) > self._total:
            evicted.append(self._forget(next(key for key in self._kept if key != keep)))
        return evicted

    def _forget(self, key: tuple[str, str]) -> tuple[str, str]:
        del self._kept[key]
        self._count[key[0]] -= 1
        if not self._count[key[0]]:
            del self._count[key[0]]
        return key

    async def _forget_in_memory(self, keys: TaskKeys) -> None:
        for did, task_id in keys:
            await self._memory.delete(task_id, _context(did))


def _context(did: str) -> ServerCallContext:
    return ServerCallContext(user=Caller(did))


def _key(did: str, task_id: str) -> str:
    return f"{did} {task_id}"  # a DID holds no space


def _record(owner: str, task: Task) -> dict:
    return {"owner": owner, "task": base64.b64encode(task.SerializeToString()).decode()}
