"""Skills that ship with the node. Ordinary skills: they import only `skills.sdk`, run in their
own process like any other, and reach the node only through the broker, as far as the owner
granted at install (`flurry skills install builtin:NAME`)."""
