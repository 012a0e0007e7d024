"""Skills installed like apps (manifests, permissions, out-of-process host). Arrives with issue 4."""
