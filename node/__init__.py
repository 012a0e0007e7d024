"""The node: configuration, the home folder, wiring of all parts, and the `flurry` command line."""
