"""The node's HTTP API now lives in node.http (one router per route family); this name stays
for the callers that import ``node.api.create_app``."""

from node.http import create_app

__all__ = ["create_app"]
