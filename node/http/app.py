"""The app factory: state on ``app.state``, the routers, the middleware and the problem
handlers, assembled. No route is defined here; each family is a router in its own module.

Who may call a family is declared once, where its router is included: public, signed
(`signed_caller`), owner only (`owner_caller`), or an owner-made token (/v1, per route).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI

from agent.queue import ModelQueue
from identity.replay_cache import ReplayCache
from node.a2a import DEFAULT_ORIGIN
from node.http import (
    a2a,
    ask,
    conversations,
    discovery,
    documents,
    nostr,
    openai,
    owner,
    pod,
    problems,
    rotation,
    skills,
)
from node.http.auth import owner_caller, signed_caller
from node.http.jobs import in_background
from node.http.solid import PodCORS, Renderings
from node.http.state import LiveConversations
from node.inbox_agent import NostrChannel, run_in_queue
from node.limits import KnownCallers, Limits, StrangerGate
from node.mail_account import MailWatcher, OnMessage
from node.node import Node
from node.nostr_owner import LocalNostrOwner
from node.nostr_wire import NostrWire
from node.owner import LocalOwner


def create_app(
    node: Node,
    *,
    max_waiting: int = 8,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    allowed_hosts: Collection[str] | None = None,
    public_origins: Sequence[str] = (DEFAULT_ORIGIN,),
    limits: Limits = Limits(),
    on_mail: OnMessage | None = None,
) -> FastAPI:
    """The app for ``node``. ``allowed_hosts`` are the authorities this node answers to
    ("127.0.0.1:8765"): a request signed for another server is refused even if its nonce is
    new here. None accepts any Host (tests, or a node behind a proxy with many names).
    ``public_origins`` are the URLs ("https://node.example") its signed agent card names,
    whatever Host a request for the card carries. Serve it with node.limits.server_config,
    which puts the header and body limits in front of it. ``on_mail`` is handed every new
    mail of the owner's accounts, as an ``Incoming``, once it is stored (node.mail_account)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if on_start:
            on_start()
        await asyncio.to_thread(
            app.state.nostr.start
        )  # connects only to relays the owner configured
        # Messages are triaged as they come; the model reads them after, on a thread of its own.
        node.inbox.read_in_background()
        await asyncio.to_thread(app.state.mail.start)  # the owner's mail accounts, if any
        yield
        await asyncio.to_thread(app.state.mail.stop)
        await asyncio.to_thread(app.state.nostr.stop)
        await asyncio.to_thread(node.inbox.stop_reading)
        await app.state.a2a.aclose()  # stops the peers' running tasks and their model jobs
        await app.state.owner.delegations.aclose()  # the owner's rounds still bidding
        app.state.model_queue.close()
        if on_stop:
            on_stop()

    app = FastAPI(
        title="flurry node", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )

    # --- state (read by node.http.state's dependencies) -------------------------------------
    known = KnownCallers(node)  # owner / granted or pinned / stranger: separate budgets
    state = app.state
    state.node = node
    state.limits = limits
    state.allowed_hosts = allowed_hosts
    state.known = known
    state.strangers = StrangerGate(
        limits.stranger_rate, limits.stranger_burst, checks=limits.stranger_checks
    )
    state.replay_cache = ReplayCache(
        classify=known.replay_tier, stranger_entries=limits.stranger_nonces
    )
    state.model_queue = ModelQueue(max_waiting=max_waiting)
    state.conversations = LiveConversations()
    state.owner = LocalOwner(node)
    state.a2a = a2a.A2AService(node, public_origins)
    state.pod_renderings = Renderings()
    state.nostr = NostrWire(node, model_queue=state.model_queue, on_message=node.inbox.on_message)
    # The inbox agent replies on the running wire, and its model work takes the peers' lane.
    node.inbox.connect("nostr", NostrChannel(node, state.nostr))
    node.inbox.run_model_with(partial(run_in_queue, state.model_queue))
    state.nostr_owner = LocalNostrOwner(node, state.nostr)
    state.signed_caller = signed_caller  # benchmarks override it to time an endpoint unsigned
    node.connect_nostr(state.nostr)  # so a skill's nostr.publish goes out on the running connection
    # New mail is fetched in threads of its own and ingested on the model queue's background lane.
    # Each new mail is stored, then triaged by the inbox agent (unless a caller hands another
    # receiver, as the mail tests do).
    state.mail = MailWatcher(
        node,
        on_mail if on_mail is not None else node.inbox.on_message,
        run_model_work=partial(in_background, state.model_queue),
    )
    node.pod_indexer.run_model_work_with(
        partial(in_background, state.model_queue)
    )  # the pod's indexing: background lane

    # --- routes ------------------------------------------------------------------------------
    signed = [Depends(signed_caller)]
    owner_only = [Depends(owner_caller)]
    app.include_router(discovery.router)
    app.include_router(rotation.public_router)
    app.include_router(rotation.peer_router, dependencies=signed)
    app.include_router(a2a.card_router)
    app.include_router(a2a.rpc_router, dependencies=signed)
    app.include_router(pod.router)  # signed, or public where the owner made a container public
    app.include_router(ask.router, dependencies=signed)
    app.include_router(documents.router, dependencies=owner_only)
    app.include_router(conversations.router, dependencies=owner_only)
    app.include_router(owner.router, dependencies=owner_only)
    app.include_router(skills.router, dependencies=owner_only)
    app.include_router(pod.owner_router, dependencies=owner_only)
    app.include_router(nostr.router, dependencies=owner_only)
    app.include_router(
        openai.router
    )  # an owner-made bearer token, per route (node.http.auth.bearer_token)

    app.add_middleware(PodCORS)
    problems.install(app)
    return app
