"""Data (F3): add files and folders with progress, search the notes, forget a document."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, ProgressBar, Static

from node.client import NodeUnavailable
from tui.format import cell
from tui.screens import Confirm
from tui.widgets.documents_table import DocumentsTable
from tui.widgets.pane import Pane


class DataPane(Pane):
    FIRST = "#add-path"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.adding = False
        self.mode = "documents"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Input(placeholder="File or folder to add (Enter)", id="add-path")
            yield Input(placeholder="tags, comma-separated", id="add-tags")
        with Horizontal(classes="row short", id="add-row"):
            yield ProgressBar(id="add-progress", show_eta=False)
            yield Static("", id="add-status", markup=False)
        yield Static("", id="add-errors", markup=False)
        yield Input(
            placeholder="Search your notes (Enter; empty lists the documents)", id="doc-search"
        )
        yield DocumentsTable(id="documents", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#add-row").display = False  # shown from the first add on

    async def refresh_data(self) -> None:
        found = await self.api("GET", "/api/owner/documents")
        if found is None:
            return
        self.mode = "documents"
        table = self.query_one("#documents", DataTable)
        table.clear(columns=True)
        table.add_columns("Document", "Chunks", "Tags")
        for d in found:
            table.add_row(
                cell(self.shown(d["path"])), d["chunks"], cell(", ".join(d["tags"])), key=d["path"]
            )
        table.border_title = f"{len(found)} documents"

    @on(Input.Submitted, "#add-path")
    def add_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if not path:
            return
        if self.adding:
            self.notify("an add is already running; wait for it to finish", severity="warning")
            return
        tags = [t.strip() for t in self.query_one("#add-tags", Input).value.split(",") if t.strip()]
        self.adding = True
        self.add(path, tags)

    @work(exclusive=True, group="add", exit_on_error=False)
    async def add(self, path: str, tags: list[str]) -> None:
        bar = self.query_one("#add-progress", ProgressBar)
        status = self.query_one("#add-status", Static)
        errors = self.query_one("#add-errors", Static)
        self.query_one("#add-row").display = True
        bar.update(total=None, progress=0)
        status.update(f"adding {self.shown(path)}…")
        errors.update("")
        failed: list[str] = []
        try:
            async for event in self.client.add(path, tags):
                if event["type"] == "queued":
                    status.update(f"waiting: {event['ahead']} ahead in the node's queue")
                elif event["type"] == "progress":
                    bar.update(total=event["total"], progress=event["done"])
                    status.update(
                        f"{event['done']}/{event['total']} {event['outcome']}: {self.shown(event['path'])}"
                    )
                elif event["type"] == "summary":
                    if (
                        bar.total is None
                    ):  # nothing to read (every file skipped): still finish the bar
                        bar.update(total=1, progress=1)
                    status.update(
                        f"done: added {event['added']}, updated {event['updated']}, unchanged {event['unchanged']}, "
                        f"skipped {len(event['skipped'])} ({event['chunks']} new chunks)"
                    )
                    failed = [
                        f"skipped {self.shown(s['path'])}: {s['reason']}" for s in event["skipped"]
                    ]
            errors.update(
                "\n".join(
                    failed[:5] + ([f"… and {len(failed) - 5} more"] if len(failed) > 5 else [])
                )
            )
            self.query_one("#add-path", Input).value = ""
        except NodeUnavailable as e:
            status.update("the add failed (see the notification); what was reported done is saved")
            self.fail(e)
        finally:
            self.adding = False
        await self.refresh_data()

    @on(Input.Submitted, "#doc-search")
    def search_submitted(self, event: Input.Submitted) -> None:
        self.search(event.value.strip())

    @work(exclusive=True, group="search", exit_on_error=False)
    async def search(self, query: str) -> None:
        if not query:
            await self.refresh_data()
            return
        found = await self.api("POST", "/api/owner/documents/search", {"query": query, "k": 10})
        if found is None:
            return
        self.mode = "search"
        table = self.query_one("#documents", DataTable)
        table.clear(columns=True)
        table.add_columns("Document", "Chunk", "Snippet")
        for n, s in enumerate(found):
            table.add_row(
                cell(self.shown(s["path"])),
                s["chunk"],
                cell(s["snippet"][:80]),
                key=f"{n}:{s['path']}",
            )
        table.border_title = (
            f"{len(found)} passages for “{query}” (empty search lists the documents)"
        )

    @on(DocumentsTable.Forget)
    def forget_asked(self, event: DocumentsTable.Forget) -> None:
        path = event.key  # in the list of documents, a row's key is the document's path
        if self.mode != "documents" or path is None:
            self.notify(
                "select a document in the list (clear the search first)", severity="warning"
            )
            return

        async def confirmed(yes: bool | None) -> None:
            if yes:
                gone = await self.api("POST", "/api/owner/documents/forget", {"path": path})
                if gone is not None:
                    self.notify(f"forgot {self.shown(path)}")
                    await self.refresh_data()

        self.app.push_screen(
            Confirm(f"Forget {self.shown(path)}? Its text and index entries are removed."),
            confirmed,
        )
