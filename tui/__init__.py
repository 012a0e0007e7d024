"""The Textual terminal app (app.py), a client of the node's API: its screens in screens/,
its widgets in widgets/, one per module, its look in app.tcss."""
