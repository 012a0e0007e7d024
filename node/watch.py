"""`flurry add --watch`: follow folders and add what changes, with watchfiles (inotify,
FSEvents, ReadDirectoryChangesW through the Rust `notify` crate; polling where none works)."""

from __future__ import annotations

from collections.abc import Callable

import watchfiles

from node.node import Node

# Editors save in bursts (a temporary file, a rename, a touch): wait for quiet before adding.
DEBOUNCE_MS = 800
# How often the watcher reports "nothing changed"; its first report says it is watching.
TICK_MS = 1000


def watch_and_add(
    node: Node, paths: tuple[str, ...], add_again: Callable[[], None], say: Callable[[str], None]
) -> None:
    """Run ``add_again`` (an add with --sync of ``paths``) after every burst of changes, until
    Ctrl-C. Unchanged files cost a read and a keyed hash, so a whole pass is cheap."""
    ready = False
    for changes in watchfiles.watch(
        *paths,
        debounce=DEBOUNCE_MS,
        rust_timeout=TICK_MS,
        yield_on_timeout=True,
        raise_interrupt=True,
    ):
        if not ready:
            # The watcher exists only from its first report: catch up on anything that changed
            # between the first add and now, then say so.
            ready = True
            add_again()
            say(f"watching {', '.join(paths)} (Ctrl-C stops)")
        elif changes:
            add_again()
