"""Ingestion: files on disk → parsed records → chunks → embeddings → the vault and the indexes.

``store.parsers`` turns each file into records (a note, a PDF, one email, a calendar) whose
sections carry citation metadata; this module decides what needs reading, cuts sections into
chunks, has them embedded and commits them.

Each document is committed to the vault in one transaction before it is reported as added,
so an interrupted run never leaves half a document; the indexes catch up from the vault at
the next unlock if the run dies before they are saved. A file of many messages (an mbox) is
one document per message, each committed on its own, and last a small marker document for
the file itself: a run killed in the middle of a big mbox resumes at the first message not
yet stored, and only once every message is in does the file count as unchanged. The
embedding function is handed in: the store knows nothing about models.

Parsers read input someone else made, so they run in worker processes (store.parse_process)
with a budget per file: a file not read in time (20 s, more for a large one) or whose text
would be more than 20,000 chunks is skipped with the reason, and nothing of it is stored.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from store import parse_process
from store.parse_process import (
    DEFAULT_BUDGET,
    Budget,
    OverBudget,
    Worker,
    chunks_of,
    parse_job,
    parse_within,
)
from store.parsers import Record, Section, Skip
from store.parsers.registry import (
    SUPPORTED,
    Parser,
    parser_for,
    too_large,
)
from store.retrieval import SearchIndexes
from store.vault import Vault
from store.vault_layout import Document, NewChunk

# Between a file's absolute path and a record's key (an mbox message): a NUL never occurs in a path.
RECORD_SEPARATOR = "\x00"

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # documents whose file is gone (--sync)
    chunks: int = 0


@dataclass(frozen=True)
class Progress:
    done: int  # files finished so far
    total: int
    path: str  # the file (or message of a file) just finished
    outcome: str  # "added", "updated", "unchanged", "skipped" or "removed"


def absolute(path: str | Path) -> str:
    """The one spelling of a path used to recognise a document again (no symlink resolution
    surprises between `add` and `forget`)."""
    return os.path.abspath(os.path.expanduser(str(path)))


def belongs_to(doc_abs_path: str, target: str) -> bool:
    """Whether a document is ``target``, lies under the folder ``target``, or is a message of
    the file ``target``."""
    return doc_abs_path == target or doc_abs_path.startswith(
        (target.rstrip(os.sep) + os.sep, target + RECORD_SEPARATOR)
    )


def discover(given: str) -> tuple[list[tuple[Path, str, Parser]], list[Skipped]]:
    """Files to read under ``given``, each with its display path (``given`` joined with the
    file's relative path) and its parser, and the files passed over with the reason."""
    root = Path(given).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{given}: no such file or folder")
    if not root.is_dir():
        parser = parser_for(root)
        if not root.is_file():
            return [], [Skipped(given, "not a regular file")]
        if parser is None:
            return [], [
                Skipped(
                    given,
                    f"unsupported file type {root.suffix or '(none)'}; flurry reads {SUPPORTED}",
                )
            ]
        return [(root, given, parser)], []
    found: list[tuple[Path, str, Parser]] = []
    skipped: list[Skipped] = []
    base = given.rstrip("/") or "/"
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden folders (.git, .obsidian, .trash) hold tooling, not the owner's writing;
        # a Maildir's tmp/ holds messages still being delivered.
        in_maildir = (Path(dirpath) / "cur").is_dir() and (Path(dirpath) / "new").is_dir()
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (in_maildir and d == "tmp")
        )
        for name in [d for d in dirnames if not _utf8(d)]:
            dirnames.remove(name)
            skipped.append(
                Skipped(
                    _printable(os.path.join(base, os.path.relpath(Path(dirpath) / name, root))),
                    NOT_UTF8,
                )
            )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            shown = os.path.join(base, os.path.relpath(path, root))
            if not _utf8(name):
                # The vault, the index and every client speak UTF-8: such a name cannot be stored
                # or shown, so the file is passed over, and the rest of the folder is added.
                skipped.append(Skipped(_printable(shown), NOT_UTF8))
                continue
            parser = parser_for(path)
            if parser is None:
                skipped.append(Skipped(shown, f"unsupported file type {path.suffix or '(none)'}"))
            elif not path.is_file():  # a FIFO or a device would block the read forever
                skipped.append(Skipped(shown, "not a regular file"))
            else:
                found.append((path, shown, parser))
    return found, skipped


NOT_UTF8 = "its name is not UTF-8 (rename it to add it)"


def _utf8(name: str) -> bool:
    # os.walk hands undecodable bytes back as lone surrogates (PEP 383), which UTF-8 refuses.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    """The name with its undecodable bytes shown as U+FFFD, so it can be reported."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse(parser: Parser, content: bytes, name: str) -> list[Record] | Skip:
    return parser.run(content, name)


@dataclass
class _Read:
    """A file read and checked, waiting for its parse."""

    path: Path
    shown: str
    abs_path: str
    content: bytes = b""
    mtime: float = 0.0
    outcome: str = ""  # set when nothing more is to be done: "unchanged" or "skipped"
    parsed: list[Record] | Skip | None = None
    worker: Worker | None = None  # the parser process reading it, until its result is taken


class Ingestor:
    def __init__(
        self,
        vault: Vault,
        indexes: SearchIndexes,
        embed: Embed,
        *,
        tags: tuple[str, ...] = (),
        index_batch: int = 256,
        parse_workers: int = 1,
        budget: Budget = DEFAULT_BUDGET,
    ) -> None:
        self._vault = vault
        self._tags = tags
        self._indexes = indexes
        self._embed = embed
        self._index_batch = index_batch
        # Parsers run in worker processes (store.parse_process), each file within ``budget``,
        # while this process embeds the file before. 0 parses here, between embeddings, with
        # the output budget but no time limit: only for input that is trusted (benchmarks).
        self._parse_workers = parse_workers
        self._budget = budget
        self._pending: tuple[list[str], list[str], list[np.ndarray]] = ([], [], [])
        self._documents: list[Document] | None = None

    def add(
        self, given: str, progress: Callable[[Progress], None] | None = None, *, sync: bool = False
    ) -> AddReport:
        files, skipped = discover(given)
        report = AddReport(skipped=list(skipped))
        try:
            for done, item in enumerate(self._read_and_parse(files), start=1):

                def each(shown: str, outcome: str, done: int = done) -> None:
                    if progress:
                        progress(Progress(done - 1, len(files), shown, outcome))

                outcome = self._store(item, report, each)
                if progress:
                    progress(Progress(done, len(files), item.shown, outcome))
        finally:
            self._flush()
        if sync:
            for doc in self.sync(given):
                report.removed.append(doc.path)
                if progress:
                    progress(Progress(len(files), len(files), doc.path, "removed"))
        return report

    def sync(self, given: str) -> list[Document]:
        """Forget the documents under ``given`` whose file is gone (or no longer read)."""
        target = absolute(given)
        gone = []
        for doc in self._vault.documents():
            file_path = doc.abs_path.split(RECORD_SEPARATOR, 1)[0]
            if not belongs_to(file_path, target):
                continue
            path = Path(file_path)
            if not path.is_file() or parser_for(path) is None:
                self._indexes.delete(self._vault.forget_document(doc.id))
                if RECORD_SEPARATOR not in doc.abs_path:
                    gone.append(doc)
        return gone

    # --- the pipeline: read → parse (maybe in other processes) → chunk, embed, commit -------

    def _read_and_parse(self, files: list[tuple[Path, str, Parser]]) -> Iterator[_Read]:
        if self._parse_workers <= 0:
            for path, shown, parser in files:
                item = self._read(path, shown, parser)
                if not item.outcome:
                    item.parsed = parse_within(
                        parser, item.content, path.name, self._budget.max_chunks
                    )
                yield item
            return
        # Each worker reads one file while this process embeds the one before, in file order;
        # a worker stopped for its budget is replaced by a fresh one.
        idle: list[Worker] = []
        # started on the first file that needs one: none when all are unchanged
        spare = self._parse_workers
        ahead: deque[_Read] = deque()
        try:
            for path, shown, parser in files:
                item = self._read(path, shown, parser)
                ready = []
                if not item.outcome:
                    if not idle and spare:
                        idle.append(parse_process.take_worker())
                        spare -= 1
                    while not idle:  # every worker busy: the oldest results first, freeing theirs
                        ready.append(self._finish(ahead.popleft(), idle))
                    worker = idle.pop()
                    try:
                        worker.start(
                            parse_job, parser.name, item.content, path.name, self._budget.max_chunks
                        )
                        item.worker = worker
                    except (
                        RuntimeError
                    ) as e:  # the worker did not start: this file is skipped, not the run
                        item.parsed = Skip(str(e))
                        idle.append(parse_process.take_worker())
                ahead.append(item)
                yield from ready  # only now: the next file is already being read meanwhile
            while ahead:
                yield self._finish(ahead.popleft(), idle)
        finally:
            for item in ahead:  # the run was stopped: the files still being read are dropped
                if item.worker is not None:
                    item.worker.kill()
            for worker in idle:
                parse_process.give_back(worker)

    def _finish(self, item: _Read, idle: list[Worker]) -> _Read:
        """``item`` with its parse's result, or the reason it has none; its worker goes back
        to ``idle`` (a fresh one if it was stopped)."""
        worker, item.worker = item.worker, None
        if worker is None:
            return item
        try:
            item.parsed = worker.result(self._budget.seconds_for(len(item.content)))
        except OverBudget as e:
            item.parsed = Skip(str(e))
        except Exception as e:  # the worker died (out of memory, a crash inside a C library)
            item.parsed = Skip(f"the parser failed ({type(e).__name__})")
        idle.append(worker if worker.alive else parse_process.take_worker())
        return item

    def _read(self, path: Path, shown: str, parser: Parser) -> _Read:
        item = _Read(path, shown, absolute(path))
        try:
            st = path.stat()
            if st.st_size > parser.max_bytes:  # refused before a byte is read
                item.parsed, item.outcome = Skip(too_large(st.st_size, parser.max_bytes)), "skipped"
                return item
            item.content = path.read_bytes()
            item.mtime = st.st_mtime
        except OSError as e:
            item.parsed, item.outcome = Skip(_reason(e)), "skipped"
            return item
        if self._vault.is_unchanged(item.abs_path, item.content, self._tags):
            item.outcome = "unchanged"
        return item

    def _store(self, item: _Read, report: AddReport, each: Callable[[str, str], None]) -> str:
        if item.outcome == "unchanged":
            report.unchanged.append(item.shown)
            return "unchanged"
        if isinstance(item.parsed, Skip):
            report.skipped.append(Skipped(item.shown, item.parsed.reason))
            return "skipped"
        records = item.parsed or []
        if len(records) == 1 and not records[0].key and not chunks_of(records[0]):
            report.skipped.append(Skipped(item.shown, "no text in it"))
            return "skipped"
        if len(records) == 1 and not records[0].key:
            outcome = self._put(
                item.shown, item.abs_path, item.content, item.mtime, records[0], report
            )
        else:
            outcome = self._put_many(item, records, report, each)
        (report.updated if outcome == "updated" else report.added).append(item.shown)
        return outcome

    def add_text(
        self,
        shown: str,
        key: str,
        text: str,
        *,
        markdown: bool = False,
        vectors: np.ndarray | None = None,
    ) -> AddReport:
        """Index ``text`` that is not a file (a pod resource's rendering, a note a skill wrote)
        as the document ``key``, replacing the one stored under that key before. ``vectors``:
        its chunks' embeddings, when they were computed already (in batches, in the background)."""
        report = AddReport()
        content = text.encode()
        record = Record([Section(text, markdown=markdown)], format="text")
        if not chunks_of(record):
            self.remove(key)  # nothing left to find: the older version must not be found either
            report.skipped.append(Skipped(shown, "no text in it"))
        elif self._vault.is_unchanged(key, content, self._tags):
            report.unchanged.append(shown)
        else:
            outcome = self._put(shown, key, content, time.time(), record, report, vectors)
            (report.updated if outcome == "updated" else report.added).append(shown)
        self._flush()
        return report

    def add_content(
        self, shown: str, key: str, content: bytes, parser: Parser
    ) -> tuple[AddReport, list[Record]]:
        """Add bytes that are not a file (a mail fetched over IMAP) as the document ``key``,
        read by ``parser`` as a file of that format is: refused over its size limit, parsed in a
        worker process within the budget, stored in one transaction. Also returns the records
        parsed (none when it was unchanged or skipped), for the caller to read the text of.
        The indexes get its chunks in batches: call ``flush`` after the last one."""
        if self._vault.is_unchanged(key, content, self._tags):
            return self.store_parsed(shown, key, content, [])
        return self.store_parsed(shown, key, content, self.parse_content(shown, content, parser))

    def parse_content(self, shown: str, content: bytes, parser: Parser) -> list[Record] | Skip:
        """``add_content``'s first half, which stores nothing: any thread may run it (a
        fetcher parses the next message while this one's are embedded)."""
        if len(content) > parser.max_bytes:  # refused before the parser sees a byte
            return Skip(too_large(len(content), parser.max_bytes))
        if self._parse_workers <= 0:
            return parse_within(parser, content, shown, self._budget.max_chunks)
        worker = parse_process.take_worker()
        try:
            worker.start(parse_job, parser.name, content, shown, self._budget.max_chunks)
            parsed: list[Record] | Skip = worker.result(self._budget.seconds_for(len(content)))
            return parsed
        except OverBudget as e:
            return Skip(str(e))
        except Exception as e:  # it did not start, or died (out of memory, a crash in C)
            return Skip(f"the parser failed ({type(e).__name__})")
        finally:
            parse_process.give_back(worker)  # killed instead, when it was stopped or died

    def store_parsed(
        self, shown: str, key: str, content: bytes, parsed: list[Record] | Skip
    ) -> tuple[AddReport, list[Record]]:
        """``add_content``'s second half: chunk, embed and commit what ``parse_content`` gave."""
        report = AddReport()
        item = _Read(Path(shown), shown, key, content=content, mtime=time.time(), parsed=parsed)
        if not isinstance(parsed, Skip) and self._vault.is_unchanged(key, content, self._tags):
            item.outcome = "unchanged"
        self._store(item, report, lambda shown, outcome: None)
        records = parsed if isinstance(parsed, list) and item.outcome != "unchanged" else []
        return report, records

    def flush(self) -> None:
        """Hand the indexes what ``add_content`` stored and they have not yet been given (the
        vault holds it already: indexes left behind catch up at the next unlock)."""
        self._flush()

    def remove(self, key: str) -> bool:
        """Forget the document stored under ``key`` (a file's absolute path or an add_text key)."""
        removed = self._vault.forget_document_at(key)
        self._indexes.delete(removed)
        return bool(removed)

    def _put_many(
        self,
        item: _Read,
        records: list[Record],
        report: AddReport,
        each: Callable[[str, str], None],
    ) -> str:
        """A file of many documents: each message on its own, then the file's marker."""
        if self._documents is None:
            self._documents = self._vault.documents()
        prefix = item.abs_path + RECORD_SEPARATOR
        before = {d.abs_path: d for d in self._documents if d.abs_path.startswith(prefix)}
        keep = set()
        for record in records:
            sub_abs = prefix + record.key
            keep.add(sub_abs)
            content = record.content if record.content is not None else record.key.encode()
            if self._vault.is_unchanged(sub_abs, content, self._tags):
                continue
            shown = item.shown + record.label
            each(shown, self._put(shown, sub_abs, content, item.mtime, record, report))
        for sub_abs, doc in before.items():  # messages deleted from the file
            if sub_abs not in keep:
                self._indexes.delete(self._vault.forget_document(doc.id))
        result = self._vault.put_document(
            path=item.shown,
            abs_path=item.abs_path,
            content=item.content,
            mtime=item.mtime,
            chunks=[],
            tags=self._tags,
            extra={"format": records[0].format if records else "", "records": len(records)},
        )
        return "updated" if before or result.removed_chunk_ids else "added"

    def _put(
        self,
        shown: str,
        abs_path: str,
        content: bytes,
        mtime: float,
        record: Record,
        report: AddReport,
        vectors: np.ndarray | None = None,
    ) -> str:
        pieces = chunks_of(record)
        if vectors is None:
            vectors = self._embed([text for text, _ in pieces])
        if len(vectors) != len(pieces):
            raise ValueError(f"{len(vectors)} embeddings for {len(pieces)} chunks")
        result = self._vault.put_document(
            path=shown,
            abs_path=abs_path,
            content=content,
            mtime=mtime,
            chunks=[
                NewChunk(text, vec, meta) for (text, meta), vec in zip(pieces, vectors, strict=True)
            ],
            tags=self._tags,
            extra={"format": record.format, **record.meta},
        )
        if result.removed_chunk_ids:
            self._indexes.delete(result.removed_chunk_ids)
        report.chunks += len(pieces)
        ids, texts, vecs = self._pending
        ids.extend(result.chunk_ids)
        texts.extend(text for text, _ in pieces)
        vecs.extend(vectors)
        if len(ids) >= self._index_batch:
            self._flush()
        return "updated" if result.removed_chunk_ids else "added"

    def _flush(self) -> None:
        ids, texts, vecs = self._pending
        if ids:
            self._indexes.add(ids, texts, np.stack(vecs))
        self._pending = ([], [], [])


def _reason(error: Exception) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)
