"""The node: every part wired together in plain Python, in one place.

Opening a node unlocks the keyring, takes the home's lock, opens the vault, restores the
indexes from their sealed snapshot and lets them catch up with the vault. Models load on
first use: `flurry add` never loads the chat model, `flurry status` loads neither.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast, get_args

from agent.answer import Conversation, Source
from agent.approvals import Approvals, Pending
from agent.audit import AuditLog
from agent.embedding import Embedder
from agent.grants import Grants
from agent.models import DEFAULT_CHAT_MODEL, resolve_model
from agent.remote_model import ChatBackend, FailoverChatModel, RemoteChatModel
from agent.runtime import ChatModel, default_threads
from agent.tokens import Tokens
from agent.tools import (
    AskOwner,
    Decision,
    Tool,
    ToolCall,
    ToolDecision,
    ToolPolicy,
    ToolTurn,
    choose_tool,
    decide_and_run,
    relevant_tools,
)
from identity.did_key import verification_method_id
from identity.keyring import Keyring, UnlockedKeyring
from identity.recovery_code import RecoveryCode
from node import remote_models
from node.home import Config, Home, HomeError, HomeLock, describe_file, private_files, runtime_dir
from node.inbox_agent import InboxAgent, NostrChannel
from node.rotation import previous_node_dids, record_rotations
from node.skill_capabilities import NostrPort, SkillCapabilities
from skills.broker import Broker
from skills.host import SkillProcess
from skills.registry import Skills
from store.ingest import AddReport, Ingestor, Progress, absolute, belongs_to
from store.pod_index import PodIndexer
from store.pod_store import INDEX_TAG as POD_INDEX_TAG
from store.pod_store import PodStore
from store.retrieval import IndexSnapshotError, SearchIndexes
from store.sealing import Sealer
from store.vault import Vault
from store.vault_layout import Document

Say = Callable[[str], None]
# all-MiniLM-L6-v2; a vault records the size of the model that filled it.
DEFAULT_EMBEDDING_DIM = 384
OWNER_QUESTION = "owner.ask"  # the "tool" name a skill's question to the owner is listed under
TOOL_POLICY = "tool-policy"  # vault records: tool name → {"decision": "allow" | "ask" | "deny"}


@dataclass(frozen=True)
class CatchUp:
    """What the indexes had to catch up on at unlock (non-zero after a crash)."""

    added: int
    removed: int
    seconds: float


@dataclass(frozen=True)
class PlannedCall:
    skill: str
    call: ToolCall


class Node:
    """Every part wired together; it holds no adapter's state. Two ports come from the adapters,
    each through its own entrance rather than an attribute set from outside: ``terminal_prompt``
    (a constructor argument: the owner sits at this process's terminal and answers a skill's
    questions there) and the server's Nostr wire (`connect_nostr`, a `NostrPort`, made after
    the node because it answers through it). Without them a skill's question waits as a
    pending approval and a skill's public note goes out on a brief connection of its own."""

    def __init__(
        self,
        home: Home,
        keys: UnlockedKeyring,
        lock: HomeLock,
        say: Say,
        *,
        terminal_prompt: AskOwner | None = None,
    ) -> None:
        self.home = home
        self.keys = keys
        self.config: Config = home.load_config()
        self._lock = lock
        self._say = say
        started = time.perf_counter()
        sealer = Sealer(keys.data_key)
        self.vault = Vault(home.vault, sealer)
        self.indexes = self._open_indexes(sealer)
        added, removed = self.indexes.reconcile(self.vault.chunk_ids(), self.vault.load_for_index)
        self.catch_up = CatchUp(added, removed, time.perf_counter() - started)
        if added or removed:
            self.indexes.save()
        self._embedder: Embedder | None = None
        self._chat_model: ChatBackend | None = None
        self._local_chat_model: ChatModel | None = None  # beside a remote one (local_chat_model)
        self.grants = Grants(self.vault)
        self.tokens = Tokens(self.vault)
        self.audit = AuditLog(
            self.vault,
            sign=keys.node_key.sign,
            signer_did=verification_method_id(keys.node_did),
            earlier_signers=previous_node_dids(keys),
        )
        # After `flurry keys rotate`, the audit log records the rotation (node.rotation says why here).
        record_rotations(self.vault, self.audit, keys)
        self.skills = Skills(self.vault, home.skills)
        self._skill_processes: dict[str, SkillProcess] = {}
        self._skill_processes_lock = threading.Lock()
        self.approvals = Approvals(record=self._record_approval)
        self._broker: Broker | None = None
        # Given by the command line while the owner sits at its terminal; None under `flurry serve`.
        self.terminal_prompt = terminal_prompt
        self._nostr: NostrPort | None = None
        # The pod's RDF resources are indexed, tagged "pod", by the indexer: in the writer's
        # thread, unless `flurry serve` hands it the model queue's background lane.
        self.pod_indexer = PodIndexer(self._pod_ingestor, lambda: self.embedder.embed)
        self.pod = PodStore(self.vault, self.pod_indexer.changed)
        # The inbox agent (node.inbox_agent): Nostr replies on a brief connection of its own
        # until `flurry serve` connects its wire and model queue (node.http.app).
        self.inbox = InboxAgent(self)
        self.inbox.connect("nostr", NostrChannel(self))

    def _pod_ingestor(self) -> Ingestor:
        """Indexes the pod's RDF resources, tagged "pod"; the embedder first, as loading it may start new indexes."""
        embed = self.embedder.embed
        return Ingestor(self.vault, self.indexes, embed, tags=(POD_INDEX_TAG,))

    def _open_indexes(self, sealer: Sealer) -> SearchIndexes:
        stored = self.vault.get_setting("embedding_dim")
        assert stored is None or isinstance(stored, int)  # the embedder's dim, set on first load
        dim = stored or DEFAULT_EMBEDDING_DIM
        try:
            return SearchIndexes.open(self.home.index_snapshot, runtime_dir(), sealer, dim)
        except IndexSnapshotError as e:
            # The vault holds every chunk's text and embedding, so nothing is lost: set the broken
            # snapshot aside (for a look later) and let reconcile rebuild the indexes from the vault.
            aside = self.home.index_snapshot.with_suffix(".broken")
            os.replace(self.home.index_snapshot, aside)
            self._say(
                f"the index snapshot did not open ({e}); rebuilding it from the vault, the old one is {aside}"
            )
            return SearchIndexes.open(self.home.index_snapshot, runtime_dir(), sealer, dim)

    # --- life cycle ----------------------------------------------------------------------

    @staticmethod
    def init(
        home: Home, passphrase: str, recovery_code: RecoveryCode | None = None
    ) -> UnlockedKeyring:
        """Create a new home: keyring (with the recovery code, if given), empty vault, default config."""
        if home.exists():
            raise FileExistsError(
                f"{home.root} already holds a flurry node (its keyring is {home.keyring}); "
                "refusing to overwrite it. Use another FLURRY_HOME for a second node."
            )
        private_files()
        home.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = Keyring.create(home.keyring, passphrase, recovery_code)
        Vault(home.vault, Sealer(keys.data_key)).close()
        if not home.config_path.exists():
            home.save_config(Config())
        return keys

    @classmethod
    def open(
        cls,
        home: Home,
        passphrase: str | None = None,
        say: Say = print,
        *,
        terminal_prompt: AskOwner | None = None,
        keys: UnlockedKeyring | None = None,
    ) -> Node:
        """Open the home with its passphrase, or with ``keys`` already unlocked (the key agent's)."""
        home.require()
        private_files()
        if keys is None:
            assert passphrase is not None, "a passphrase or the unlocked keys"
            # A wrong passphrase stops here, before any write.
            keys = Keyring.unlock(home.keyring, passphrase)
        lock = HomeLock(home)
        lock.acquire()
        try:
            return cls(home, keys, lock, say, terminal_prompt=terminal_prompt)
        except BaseException:
            lock.release()
            raise

    def close(self) -> None:
        try:
            self.approvals.cancel_all()
            for process in self._skill_processes.values():
                process.stop()
            if self._broker is not None:
                self._broker.close()
                self._broker.path.parent.rmdir()
            self.indexes.save()
            if isinstance(self._chat_model, FailoverChatModel):
                self._chat_model.remote.close()  # its pooled connections to the other box
        finally:
            self.indexes.close()
            self.vault.close()
            self._lock.release()

    # --- ports --------------------------------------------------------------------------

    @property
    def nostr(self) -> NostrPort | None:
        """The server's running Nostr wire, if one was connected."""
        return self._nostr

    def connect_nostr(self, wire: NostrPort) -> None:
        """The server hands in its wire, so a skill's nostr.publish goes out on the running connection."""
        self._nostr = wire

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- models, loaded on first use -----------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            path = resolve_model(self.config.embedding_model, self.home.models, self._say)
            self._embedder = Embedder(path, n_threads=default_threads())
            self._check_embedding_model(self._embedder)
        return self._embedder

    def _check_embedding_model(self, embedder: Embedder) -> None:
        # Vectors from two different models cannot be compared: refuse rather than answer badly.
        used = self.vault.get_setting("embedding_model")
        if used is None:
            self.vault.set_setting("embedding_model", self.config.embedding_model)
            self.vault.set_setting("embedding_dim", embedder.dim)
            if (
                embedder.dim != self.indexes.dim
            ):  # a first model of another size: start the empty indexes again
                self.indexes.close()
                self.indexes = SearchIndexes.open(
                    self.home.index_snapshot,
                    runtime_dir(),
                    Sealer(self.keys.data_key),
                    embedder.dim,
                )
        elif used != self.config.embedding_model:
            raise HomeError(
                f"this vault was indexed with the embedding model {used!r}, but the config names "
                f"{self.config.embedding_model!r}; switch back (flurry models use embedding {used})"
            )

    @property
    def chat_model(self) -> ChatBackend:
        """The model the owner's own work uses (answers, chat, tool calls, /v1, the inbox
        agent): the configured one; with ``remote:NAME`` that server, the local model behind it
        while it is down (agent.remote_model.FailoverChatModel)."""
        if self._chat_model is None:
            if self.config.chat_model.startswith(remote_models.PREFIX):
                remote, _ = remote_models.find(self.vault, self.config.chat_model)
                failover = FailoverChatModel(
                    RemoteChatModel(remote, n_ctx=self.config.n_ctx),
                    lambda: self.local_chat_model,
                    local_n_ctx=self.config.n_ctx,
                )
                self._say(
                    f"Your questions go to {failover.name} ({remote.url}): the question and the "
                    "notes it draws on leave this box for that server."
                )
                why = (
                    failover.check()
                )  # at start: a server that is down is known before the first question
                if why is not None:
                    self._say(
                        f"{failover.name} does not answer ({why}): the local model answers meanwhile."
                    )
                self._chat_model = failover
            else:
                self._chat_model = self._load_chat_model(self.config.chat_model)
        return self._chat_model

    @property
    def local_chat_model(self) -> ChatModel:
        """The model in this process: what must be token-exact (receipts, metered inference,
        work under contract) and, unless the owner allows their remote for peers, every peer's
        question. The configured model; the default one when the configured model is remote."""
        if not self.config.chat_model.startswith(remote_models.PREFIX):
            return cast(ChatModel, self.chat_model)
        if self._local_chat_model is None:
            self._local_chat_model = self._load_chat_model(DEFAULT_CHAT_MODEL)
        return self._local_chat_model

    def _load_chat_model(self, name: str) -> ChatModel:
        path = resolve_model(name, self.home.models, self._say)
        return ChatModel(path, n_ctx=self.config.n_ctx, n_gpu_layers=self.config.n_gpu_layers)

    def _where_prompts_go(self) -> dict:
        """What leaves the node with the configured chat model (`flurry status`)."""
        if not self.config.chat_model.startswith(remote_models.PREFIX):
            return {"to": "this box", "leaves": "nothing"}
        remote, allow_peers = remote_models.find(self.vault, self.config.chat_model)
        return {
            "to": f"{remote_models.PREFIX}{remote.name}",
            "url": remote.url,
            "leaves": "each question of yours and the notes it draws on",
            "peers": "the remote too, without a receipt" if allow_peers else "the local model",
            "fallback": DEFAULT_CHAT_MODEL,
        }

    def model_for(self, peer: str | None) -> ChatBackend:
        """The model that answers ``peer``'s questions (None: the owner's)."""
        if peer is None or peer == self.keys.owner_did:
            return self.chat_model
        if self.config.chat_model.startswith(remote_models.PREFIX):
            _, allow_peers = remote_models.find(self.vault, self.config.chat_model)
            if not allow_peers:
                return self.local_chat_model
        return self.chat_model

    # --- what the owner does -------------------------------------------------------------

    def add(
        self,
        path: str,
        progress: Callable[[Progress], None] | None = None,
        tags: tuple[str, ...] = (),
        sync: bool = False,
    ) -> AddReport:
        """Add what ``path`` holds; ``sync`` also forgets documents whose file is gone."""
        ingestor = Ingestor(
            self.vault, self.indexes, self.embedder.embed, tags=tuple(sorted(set(tags)))
        )
        try:
            return ingestor.add(path, progress, sync=sync)
        finally:
            self.indexes.save()

    def remember(self, title: str, text: str, by: str = "owner") -> str:
        """Keep a note that is not a file (a skill wrote it): sealed and searchable like any
        document, tagged "notes". Returns the path it is shown under."""
        shown = f"notes/{time.strftime('%Y-%m-%d')} {title.strip()[:80]}"
        ingestor = Ingestor(self.vault, self.indexes, self.embedder.embed, tags=("notes",))
        try:
            report = ingestor.add_text(
                shown,
                f"flurry-note:{uuid.uuid4().hex}",
                f"# {title.strip()}\n\n{text}\n",
                markdown=True,
            )
        finally:
            self.indexes.save()
        if report.skipped:
            raise ValueError(f"the note was not kept: {report.skipped[0].reason}")
        return shown

    def forget(self, path: str) -> list[Document]:
        """Remove every document at or under ``path`` from the vault and the indexes."""
        target = absolute(path)
        gone = [d for d in self.vault.documents() if belongs_to(d.abs_path, target)]
        for doc in gone:
            self.indexes.delete(self.vault.forget_document(doc.id))
        self.indexes.save()
        return gone

    def retrieve(self, question: str, k: int, tags: frozenset[str] | None = None) -> list[Source]:
        """The k best chunks for ``question``; with ``tags``, only from documents that carry one
        of them (a peer's grant), None meaning all of the owner's data."""
        if not len(self.indexes) or (tags is not None and not tags):
            return []
        # Filtering happens after the search, so ask for more when some results may be dropped.
        wanted = k if tags is None else k * 10
        hits = self.indexes.search(question, self.embedder.embed_one(question), wanted)
        chunks = self.vault.get_chunks([cid for cid, _ in hits])
        found = [
            (chunks[cid], score)
            for cid, score in hits
            if cid in chunks and (tags is None or tags.intersection(chunks[cid].tags))
        ][:k]
        return [
            Source(n, c.path, c.seq, score, c.text, c.meta)
            for n, (c, score) in enumerate(found, start=1)
        ]

    def conversation(
        self,
        title: str = "chat",
        tags: frozenset[str] | None = None,
        *,
        peer: str | None = None,
        grounded: bool = True,
        recorded: bool = False,
    ) -> Conversation:
        """A new multi-turn conversation, sealed in the vault message by message; ``tags``
        limits what it may draw on (None: all of the owner's data). A ``peer``'s conversation
        reads that DID's grant at every turn, so a narrowed or withdrawn grant takes effect on
        conversations already open."""
        conv_id = self.vault.create_conversation(title)

        def retrieve(question: str, k: int) -> list[Source]:
            return self.retrieve(question, k, self.peer_tags(peer) if peer is not None else tags)

        model = self.model_for(peer)
        return Conversation(
            model,
            retrieve,
            record=lambda message: self.vault.append_message(conv_id, message),
            grounded=grounded,
            embed=lambda texts: self.embedder.embed(texts),
            # A remote reply cannot be recorded token by token: no receipt for it.
            recorded=recorded and hasattr(model, "stream_recorded"),
        )

    def peer_tags(self, did: str) -> frozenset[str] | None:
        """The vault tags ``did`` may draw on now: None for all (the owner, or a grant without
        tags), empty when it holds no grant to ask any more."""
        if did == self.keys.owner_did:
            return None
        grant = self.grants.get(did)
        if grant is None or not grant.allows("ask"):
            return frozenset()
        return grant.tags

    # --- skills' tools --------------------------------------------------------------------

    def tool_policy(self) -> ToolPolicy:
        return ToolPolicy(
            {tool: rule["decision"] for tool, rule in self.vault.records(TOOL_POLICY)}
        )

    def set_tool_policy(self, tool: str, decision: str) -> None:
        if decision not in get_args(Decision):  # the owner's word, from the API or the command line
            raise ValueError(f"unknown decision {decision!r}")
        self.vault.put_record(TOOL_POLICY, tool, {"decision": decision})

    def forget_tool_policy(self, tool: str) -> None:
        """Drop the owner's rule for ``tool``: a skill installed again starts from "ask"."""
        self.vault.delete_record(TOOL_POLICY, tool)

    def enabled_tools(self) -> dict[str, tuple[str, Tool]]:
        """tool name → (skill, tool), over every approved and enabled skill."""
        found: dict[str, tuple[str, Tool]] = {}
        for info in self.skills.list():
            if not (info.approved and info.enabled):
                continue
            # An unmanaged MCP server says what it offers only when asked; a managed skill
            # not started yet offers the versions the owner approved (skills.tool_pins). Either
            # way a tool that changed since, or appeared, waits for the owner's review.
            with self._skill_processes_lock:
                running = self._skill_processes.get(info.name)
            if running is None and not info.managed:
                running = self._skill_process(info.name)
            if running is not None:
                listed = [t for t in running.tools.values() if t.name not in running.disabled]
                tools = [Tool(t.name, t.description or "", t.input_schema) for t in listed]
            else:
                pins = info.approved_pins()
                offered = pins.offered() if pins else []
                tools = [Tool(t["name"], t["description"], t["input_schema"]) for t in offered]
            for tool in tools:
                found.setdefault(
                    tool.name, (info.name, tool)
                )  # the first skill installed keeps a shared name
        return found

    def _skill_process(self, name: str) -> SkillProcess:
        with self._skill_processes_lock:  # API requests come from several threads
            if name not in self._skill_processes:
                self._skill_processes[name] = self.skills.start(name, broker=self._skill_broker())
            return self._skill_processes[name]

    def _skill_broker(self) -> Broker:
        """The broker managed skills reach the node through; started with the first skill."""
        if self._broker is None:
            # The system's temp folder, not the runtime folder: that may be under /run, which the
            # sandbox hides from skills (it holds the session bus and agents' sockets).
            folder = Path(tempfile.mkdtemp(prefix="flurry-broker-"))
            self._broker = Broker(
                SkillCapabilities(self),
                folder,
                granted=lambda skill: self.skills.info(skill).granted,
            )
        return self._broker

    def stop_skill(self, name: str) -> None:
        """Stop a running skill's process (disabled, revoked or removed: it must not keep running)."""
        with self._skill_processes_lock:
            process = self._skill_processes.pop(name, None)
        if process is not None:
            process.stop()
        if self._broker is not None:
            self._broker.forget(name)

    def plan_tool_call(self, request: str) -> PlannedCall | None:
        """The tool call the request asks for, if any (None: answer from the notes instead).
        This is the model's part of a tool turn; run it on the model queue."""
        enabled = self.enabled_tools()
        offered = relevant_tools(
            self.embedder.embed, request, [tool for _, tool in enabled.values()]
        )
        call = choose_tool(self.chat_model, request, offered) if offered else None
        return None if call is None else PlannedCall(enabled[call.tool][0], call)

    def run_planned(self, planned: PlannedCall, ask_owner: AskOwner) -> ToolTurn:
        """Pass the call through the owner's policy and run it if allowed. Every call that
        runs is in the audit log before it runs."""

        def execute(call: ToolCall) -> str:
            self.audit.append(
                "skill.tool",
                target=planned.skill,
                details={"tool": call.tool, "arguments": call.arguments},
            )
            return self._skill_process(planned.skill).call_tool(call.tool, call.arguments)

        pins = self.skills.info(planned.skill).approved_pins()
        if pins is not None and planned.call.tool in pins.pending:
            # Changed since the owner approved it (skills.tool_pins): refused before anyone is
            # asked to let it run. (Found changed only as it starts, it is refused by the process.)
            reason = pins.refusal(planned.skill, planned.call.tool)
            return ToolTurn(planned.call, ToolDecision(False, reason), None)
        return decide_and_run(planned.call, self.tool_policy(), execute, ask_owner)

    def ask_with_tools(self, request: str, ask_owner: AskOwner) -> ToolTurn | None:
        """Run a skill's tool if the request is for one (None: answer from the notes instead)."""
        planned = self.plan_tool_call(request)
        return None if planned is None else self.run_planned(planned, ask_owner)

    def ask_owner(self, skill: str, question: str) -> bool:
        """A skill's yes/no question for the owner: at the terminal when one is asking
        (``terminal_prompt``), else a pending approval the TUI or `flurry approvals` answers."""
        call = ToolCall(OWNER_QUESTION, {"question": question})
        if self.terminal_prompt is not None:
            return self.terminal_prompt(call)
        return self.approvals.wait(self.approvals.open(call, skill, requester=f"skill:{skill}"))

    def _record_approval(self, pending: Pending, decision: str) -> None:
        self.audit.append(
            "tool.approval",
            target=pending.skill,
            details={
                "tool": pending.call.tool,
                "arguments": pending.call.arguments,
                "requester": pending.requester,
                "decision": decision,
            },
        )

    def status(self) -> dict:
        documents, chunks = self.vault.counts()
        return {
            "home": str(self.home.root),
            "owner_did": self.keys.owner_did,
            "node_did": self.keys.node_did,
            "chat_model": self.config.chat_model,
            "prompts": self._where_prompts_go(),
            "embedding_model": self.config.embedding_model,
            "models_dir": str(self.home.models),
            "documents": documents,
            "chunks": chunks,
            "index": {
                "vectors": self.indexes.counts()[0],
                "lexical": self.indexes.counts()[1],
                "snapshot": describe_file(self.home.index_snapshot),
                "caught_up_at_unlock": {
                    "added": self.catch_up.added,
                    "removed": self.catch_up.removed,
                },
                "unlock_seconds": round(self.catch_up.seconds, 3),
            },
        }
