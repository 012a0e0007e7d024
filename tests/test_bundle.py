"""The bundle of files the index snapshot is made of: what is packed comes back byte for byte,
and a bundle that names a path outside its folder, writes through a link or over a file, or
is cut short, is refused with nothing written outside the folder."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest

from store.bundle import BundleError, BundleWriter, unpack_bundle

HEADER = struct.Struct(">HQ")


def raw_bundle(*files: tuple[bytes, bytes], end: bool = True) -> io.BytesIO:
    """A bundle written by hand, names unchecked: what a damaged or forged one could hold."""
    data = b"".join(HEADER.pack(len(name), len(body)) + name + body for name, body in files)
    return io.BytesIO(data + (HEADER.pack(0, 0) if end else b""))


def test_files_and_folders_come_back_byte_for_byte(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub" / "deeper").mkdir(parents=True)
    files = {
        "a.bin": os.urandom(10_000_000),  # more than one copy buffer
        "sub/empty": b"",
        "sub/deeper/c.sqlite3": os.urandom(1234),
    }
    for name, body in files.items():
        (source / name).write_bytes(body)
    buffer = io.BytesIO()
    bundle = BundleWriter(buffer)
    bundle.add_bytes("manifest.json", b'{"format": 2}')
    bundle.add_folder(source, "chroma")
    bundle.close()

    target = tmp_path / "target"
    target.mkdir()
    names = unpack_bundle(io.BytesIO(buffer.getvalue()), target)
    assert names == ["manifest.json"] + [f"chroma/{name}" for name in sorted(files)]
    assert (target / "manifest.json").read_bytes() == b'{"format": 2}'
    for name, body in files.items():
        assert (target / "chroma" / name).read_bytes() == body
        assert (target / "chroma" / name).stat().st_mode & 0o077 == 0  # only the owner's


@pytest.mark.parametrize(
    "name",
    [
        b"../outside",
        b"/etc/passwd",
        b"a/../../outside",
        b"a//b",
        b"./a",
        b"a/.",
        b".hidden",
        b"a\\b",
    ],
)
def test_a_name_that_leaves_the_folder_is_refused(tmp_path: Path, name: bytes) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(BundleError, match="may not hold"):
        unpack_bundle(raw_bundle((name, b"x")), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert list(target.iterdir()) == []


def test_writing_never_goes_through_a_link_or_over_a_file(tmp_path: Path) -> None:
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.write_bytes(b"keep me")
    (target / "link").symlink_to(outside)
    with pytest.raises(OSError):
        unpack_bundle(raw_bundle((b"link", b"overwritten")), target)
    assert outside.read_bytes() == b"keep me"
    with pytest.raises(FileExistsError):  # the same name twice: the second is not written
        unpack_bundle(raw_bundle((b"twice", b"first"), (b"twice", b"second")), target)
    assert (target / "twice").read_bytes() == b"first"


def test_a_bundle_cut_inside_a_file_is_refused(tmp_path: Path) -> None:
    whole = raw_bundle((b"a", b"0123456789")).getvalue()
    with pytest.raises(BundleError, match="cut short inside a"):
        unpack_bundle(io.BytesIO(whole[: HEADER.size + 1 + 5]), tmp_path)


@pytest.mark.parametrize(
    "damaged",
    [
        raw_bundle((b"b", b"x"), end=False),  # no end
        io.BytesIO(raw_bundle((b"c", b"x")).getvalue() + b"more"),  # more after its end
        io.BytesIO(HEADER.pack(5000, 1) + b"x" * 5001),  # a name too long
        raw_bundle((b"\xff\xfe", b"x")),  # a name that is not text
    ],
    ids=["no end", "after its end", "name too long", "not text"],
)
def test_a_damaged_bundle_is_refused(tmp_path: Path, damaged: io.BytesIO) -> None:
    with pytest.raises(BundleError):
        unpack_bundle(damaged, tmp_path)


def test_links_in_the_folder_packed_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "secret-link").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="not a plain file"):
        BundleWriter(io.BytesIO()).add_folder(source, "chroma")
