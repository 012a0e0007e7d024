"""`flurry models pull`: a GGUF from an https URL or a Hugging Face file, resumable and checked.

What crosses the boundary is an arbitrary server's answer, so the download is held to:

- where: ``https://`` anywhere, plain ``http://`` only to this machine (loopback, where TLS
  adds nothing); a redirect is followed only to such a URL, and never from a remote server
  to this machine; at most ``MAX_REDIRECTS`` hops.
- what: the first four bytes must be the GGUF magic. They are checked in memory before the
  first byte is written, so a web page or an archive never lands in the models folder.
- how much: a size cap and the free disk space are checked against Content-Length (or
  Content-Range) before the body is read, and the cap again as bytes arrive.
- how long: connect and read timeouts, so a stalled server ends with a message.

The bytes go to ``.<name>.part`` in the models folder, with ``.<name>.part.json`` saying
which source and which server version (ETag, size) they are from. A pull that stops — a
cut connection, a timeout, Ctrl-C — leaves both; the same pull again asks for the rest with
an HTTP Range request (and If-Range, so a changed file starts over). A server that ignores
Range answers 200 with the whole file: the part is dropped and the file read from byte 0.
The sha256 is computed as the bytes are written (over the kept part first, on a resume),
compared with the catalog's pin and with the digest Hugging Face announces for its large
files (``X-Linked-Etag``); a mismatch deletes the part. Only a complete, verified file is
renamed to ``<name>`` — the only name flurry ever loads — with ``<name>.pull.json`` beside
it recording where it came from and its sha256.

A pull needs no passphrase and does not go through `flurry serve`'s owner API: the models
folder is not part of the sealed home (it can be shared, FLURRY_MODELS), a running node has
its model loaded already and never opens a file being pulled, and a new file appears only
by an atomic rename. Two pulls into one folder at once are refused by a lock on the folder.

This module owns the transfer (lock, resume, checks as the bytes arrive, the record); what a
source names and which URLs may be fetched is ``agent.model_sources``'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from agent.model_sources import Source, check_url, resolve_source
from agent.models import ModelError

GGUF_MAGIC = b"GGUF"
MAX_REDIRECTS = 10
DEFAULT_MAX_BYTES = 64 * 1024**3  # larger than any model a home box runs; --max-size lowers it
DISK_MARGIN = 256 * 1024**2  # left free after the download, for the vault and the system

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


@dataclass(frozen=True)
class Pulled:
    path: Path
    sha256: str
    size: int
    source: str
    url: str
    checked: str  # what the digest was checked against
    resumed_at: int  # bytes kept from an earlier, interrupted pull
    already: bool = False


# --- the transfer --------------------------------------------------------------------------


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelError(
                f"another pull is writing into {folder}; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)  # closing drops the flock


@contextmanager
def _get(
    client: httpx.Client, url: str, headers: dict[str, str]
) -> Iterator[tuple[httpx.Response, dict[str, str]]]:
    """GET with redirects followed by hand, each hop checked; yields the final response and
    what the hops announced (Hugging Face puts the file's sha256 and size on its redirect)."""
    announced: dict[str, str] = {}
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(client.build_request("GET", url, headers=headers), stream=True)
        for header in ("x-linked-etag", "x-linked-size"):
            if header in response.headers:
                announced[header] = response.headers[header]
        if not response.is_redirect:
            try:
                yield response, announced
            finally:
                response.close()
            return
        location = response.headers.get("location", "")
        response.close()
        target = str(httpx.URL(url).join(location))
        check_url(target, came_from=url)
        url = target
    raise ModelError(f"more than {MAX_REDIRECTS} redirects from {urlsplit(url).hostname}: refused")


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` → (START, TOTAL or None)."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", value.strip())
    if not match:
        raise ModelError(f"the server sent an unreadable Content-Range: {value!r}")
    return int(match[1]), None if match[3] == "*" else int(match[3])


def _int_header(headers: httpx.Headers | dict[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ModelError(f"the server sent a malformed {name}: {value!r}")
    return int(value)


def _announced_sha256(announced: dict[str, str]) -> str | None:
    value = announced.get("x-linked-etag", "").strip().removeprefix("W/").strip('"').lower()
    return value if _SHA256.match(value) else None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


class _Part:
    """The unfinished download and its note: which source and server version its bytes are from."""

    def __init__(self, folder: Path, filename: str) -> None:
        self.path = folder / f".{filename}.part"
        self.note = folder / f".{filename}.part.json"

    def kept(self, url: str) -> tuple[int, dict]:
        """Bytes worth resuming from, and the note; 0 when there is nothing usable."""
        try:
            note = json.loads(self.note.read_text())
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(len(GGUF_MAGIC))
        except (OSError, ValueError):
            self.drop()
            return 0, {}
        total = note.get("total")
        if note.get("url") != url or head != GGUF_MAGIC or (total is not None and size > total):
            self.drop()
            return 0, {}
        return size, note

    def start(self, url: str, response: httpx.Response, total: int | None) -> None:
        etag = response.headers.get("etag")
        note = {
            "url": url,
            "etag": etag if etag and not etag.startswith("W/") else None,
            "total": total,
        }
        tmp = self.note.with_suffix(".tmp")
        tmp.write_text(json.dumps(note))
        os.replace(tmp, self.note)

    def drop(self) -> None:
        for p in (self.path, self.note):
            p.unlink(missing_ok=True)


def record_path(model: Path) -> Path:
    return model.with_name(model.name + ".pull.json")


def read_record(model: Path) -> dict | None:
    try:
        return json.loads(record_path(model).read_text())
    except (OSError, ValueError):
        return None


def pull(
    source: str,
    models_dir: Path,
    *,
    name: str | None = None,
    sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 60.0,
    progress: Progress | None = None,
    say: Callable[[str], None] = print,
) -> Pulled:
    """Download ``source`` into ``models_dir`` (resuming an interrupted pull) and verify it."""
    src = resolve_source(source, name, sha256)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / src.filename
    with _folder_lock(models_dir):
        if target.is_file():
            record = read_record(target) or {}
            if src.sha256 and record.get("sha256") != src.sha256:
                raise ModelError(
                    f"{target} is already there but does not match the pinned sha256; move it away and pull again"
                )
            return Pulled(
                target,
                record.get("sha256", "not recorded"),
                target.stat().st_size,
                record.get("source", "?"),
                record.get("url", "?"),
                record.get("checked", "?"),
                0,
                already=True,
            )
        part = _Part(models_dir, src.filename)
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 30.0))
        # Redirects by hand (see _get); proxies from the environment apply, as they do to pip.
        with httpx.Client(
            timeout=timeouts,
            follow_redirects=False,
            headers={"User-Agent": "flurry-models-pull", "Accept-Encoding": "identity"},
        ) as client:
            for _ in range(
                2
            ):  # a second round only when the server cannot serve the kept part's rest
                try:
                    done = _transfer(client, src, part, models_dir, max_bytes, progress, say)
                except httpx.TimeoutException:
                    raise ModelError(
                        f"{urlsplit(src.url).hostname} stopped answering ({timeout:.0f} s); run the same pull again to resume"
                    ) from None
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
                    kept = part.path.stat().st_size if part.path.exists() else 0
                    raise ModelError(
                        f"the connection broke after {_human(kept)} ({type(e).__name__}); run the same pull again to resume"
                    ) from None
                except httpx.ConnectError as e:
                    raise ModelError(
                        f"cannot connect to {urlsplit(src.url).hostname}: {e}"
                    ) from None
                except httpx.HTTPError as e:
                    raise ModelError(f"download of {src.url} failed: {e}") from None
                except (
                    OSError
                ) as e:  # the disk filled up, the folder went away: what arrived is kept
                    raise ModelError(
                        f"cannot write into {models_dir}: {e.strerror or e}; run the same pull again to resume"
                    ) from None
                if done is not None:
                    break
            else:
                raise ModelError(
                    f"{urlsplit(src.url).hostname} would not serve the rest of the file; run the pull again"
                )
        digest, size, resumed_at, announced = done
        checked = []
        for what, expected in (
            ("the pinned sha256", src.sha256),
            ("the digest the server announced", announced),
        ):
            if expected is None:
                continue
            if digest != expected:
                part.drop()
                raise ModelError(
                    f"{src.filename}: sha256 {digest} does not match {what} {expected}; deleted what was downloaded"
                )
            checked.append(what)
        record = {
            "source": src.label,
            "url": src.url,
            "sha256": digest,
            "size": size,
            "checked": ", ".join(checked) or "no pin to check it against",
            "pulled": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = record_path(target).with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, record_path(target))
        os.replace(part.path, target)  # the only step that makes it a model: complete and verified
        part.note.unlink(missing_ok=True)
        return Pulled(target, digest, size, src.label, src.url, record["checked"], resumed_at)


def _transfer(
    client: httpx.Client,
    src: Source,
    part: _Part,
    folder: Path,
    max_bytes: int,
    progress: Progress | None,
    say: Callable[[str], None],
) -> tuple[str, int, int, str | None] | None:
    """One request: the rest of the kept part, or the whole file. Returns (sha256, size,
    bytes resumed from, announced sha256), or None when the next round must start over."""
    have, note = part.kept(src.url)
    headers = {}
    if have:
        headers["Range"] = f"bytes={have}-"
        if note.get("etag"):
            headers["If-Range"] = note["etag"]
    with _get(client, src.url, headers) as (response, announced):
        if response.status_code == 416 and have:
            say("the server would not resume this download; starting over")
            part.drop()
            return None
        if response.status_code not in (200, 206) or (response.status_code == 206 and not have):
            reason = response.reason_phrase or ""
            hint = (
                "; the file may need a login on the hub (a gated model): download it yourself and `flurry models use chat PATH`"
                if response.status_code in (401, 403)
                else ""
            )
            raise ModelError(
                f"{urlsplit(str(response.url)).hostname} answered {response.status_code} {reason} for {src.url}{hint}"
            )
        encoding = response.headers.get("content-encoding", "identity").lower()
        if encoding not in ("identity", ""):
            raise ModelError(
                f"the server sent the file {encoding}-encoded although flurry asked for it as is; refused"
            )
        length = _int_header(response.headers, "content-length")
        if response.status_code == 206:
            start, total = _content_range(response.headers.get("content-range", ""))
            if start != have or (note.get("total") and total != note["total"]):
                say("the server's file is not the one the kept part came from; starting over")
                part.drop()
                return None
            if length is not None and total is not None and length != total - start:
                raise ModelError(
                    f"the server's Content-Length ({length}) and Content-Range ({start}-…/{total}) disagree; refused"
                )
        else:
            if have:
                say(
                    f"{urlsplit(str(response.url)).hostname} sent the whole file instead of the rest "
                    "(the file changed, or the server does not resume); starting over"
                )
                part.drop()
                have = 0
            total = length
        if total is None:  # no length on the wire: the size the hub announced, if any
            total = _int_header(announced, "x-linked-size")
        # Limits before the body is read.
        if total is not None:
            if total > max_bytes:
                raise ModelError(
                    f"{src.filename} is {_human(total)}, over the {_human(max_bytes)} limit (--max-size); nothing saved"
                )
            if total < 32:
                raise ModelError(
                    f"{src.filename} is {total} bytes: too small to be a GGUF model; nothing saved"
                )
            free = shutil.disk_usage(folder).free
            if total - have + DISK_MARGIN > free:
                raise ModelError(
                    f"{src.filename} needs {_human(total - have)} more, but {folder} has {_human(free)} free; nothing saved"
                )
        hasher = hashlib.sha256()
        if have:
            with open(part.path, "rb") as f:
                while block := f.read(1 << 20):
                    hasher.update(block)
        size = have
        chunks = (
            response.iter_raw()
        )  # as received: a chunker would lose its buffer when the connection breaks
        if not have:
            head = b""
            for chunk in chunks:  # the magic, checked before anything touches the disk
                head += chunk
                if len(head) >= len(GGUF_MAGIC):
                    break
            if head[: len(GGUF_MAGIC)] != GGUF_MAGIC:
                kind = response.headers.get("content-type", "unknown type")
                raise ModelError(
                    f"{src.label} is not a GGUF model (it starts {head[:8]!r}, {kind}); nothing saved"
                )
            part.start(src.url, response, total)
            chunks = _prepend(head, chunks)
        if progress:
            progress(size, total)
        with open(part.path, "ab" if have else "wb") as f:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes or (total is not None and size > total):
                    f.close()
                    part.drop()
                    limit = (
                        f"the {_human(max_bytes)} limit"
                        if size > max_bytes or total is None  # None: only the limit was passed
                        else f"the {_human(total)} the server announced"
                    )
                    raise ModelError(
                        f"{src.filename} grew past {limit}; deleted what was downloaded"
                    )
                f.write(chunk)
                hasher.update(chunk)
                if progress:
                    progress(size, total)
            f.flush()
            os.fsync(f.fileno())  # durable before the rename that makes it a model
        if total is not None and size != total:
            raise ModelError(
                f"the download ended after {_human(size)} of {_human(total)}; run the same pull again to resume"
            )
        return hasher.hexdigest(), size, have, _announced_sha256(announced)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
