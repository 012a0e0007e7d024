"""The node's HTTP API: one FastAPI app for the owner's own clients, other agents and local apps.

Every request under /api and /a2a is signed (RFC 9421, identity.http_signatures): the
signature names the caller's DID, and the grants decide what that DID may do; the owner's
DID holds every grant. The discovery documents under /.well-known are public. The
OpenAI-compatible /v1 endpoints take owner-made bearer tokens instead, because the apps
that speak that API cannot sign.

Model work goes through one bounded queue (agent.queue): a full queue answers 503 with
Retry-After, and a client that disconnects cancels its job.

Layout: app.py assembles; one router per route family (discovery, ask, conversations,
documents, owner, skills, pod, a2a, openai, nostr); auth.py and calls.py are the
dependencies they share; problems.py is the one table from errors to statuses; state.py
what lives on ``app.state``; jobs.py the model queue's streams; solid.py the pod's wire details.
"""

from node.http.app import create_app

__all__ = ["create_app"]
