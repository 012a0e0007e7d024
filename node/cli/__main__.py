"""`python -m node.cli`: what the `flurry` script runs (the tests start it this way)."""

from node.cli import main

main()
