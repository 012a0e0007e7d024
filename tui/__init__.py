"""The Textual terminal app, a client of the node API. Arrives with issue 5."""
