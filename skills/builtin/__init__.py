"""Skills that ship with the node. Ordinary skills: they import only `skills.sdk`, run in their
own process like any other, and reach the node only through the broker, as far as the owner
granted at install (`flurry skills install builtin:NAME`). Each is declared as an entry point in
group `flurry.skills` of pyproject.toml, as a third-party skill is in its own."""
