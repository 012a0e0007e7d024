"""Backups: `flurry backup DEST`, `backup list | verify | prune SRC`, `flurry restore SRC`."""

from __future__ import annotations

from pathlib import Path

import click

from identity.keyring import Keyring
from node.backup import back_up, open_repository, restore
from node.backup_repository import BackupError
from node.cli.common import Settings, _passphrase, err, out


class _BackupGroup(click.Group):
    """`flurry backup DEST` is `flurry backup create DEST`: a first word that names no
    subcommand is a folder (write ./verify to back up into a folder called "verify")."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_BackupGroup)
def backup() -> None:
    """Back the node up into a folder, sealed and incremental: `flurry backup DEST` (the same as
    `flurry backup create DEST`); list, verify and prune a backup folder."""


@backup.command()
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--with-models",
    is_flag=True,
    help="Copy the model files too (by default a snapshot names them by sha256 only).",
)
@click.pass_obj
def create(settings: Settings, dest: Path, with_models: bool) -> None:
    """Write a new snapshot of the home into DEST (made if new); works while the node runs."""
    settings.home.require()
    keys = Keyring.unlock(settings.home.keyring, _passphrase(settings))
    result = back_up(
        settings.home, keys, dest, with_models=with_models, say=lambda line: err.print(line)
    )
    out.print(
        f"snapshot {result.snapshot}: {result.files} files, {result.bytes_total} bytes; "
        f"{result.bytes_written} bytes new in {dest} ({result.objects_written} objects)",
        markup=False,
    )
    for model in result.models:
        if model.get("sha256") is None:
            out.print(f"  model {model['name']}: no file here, named only", markup=False)
        elif not model.get("copied"):
            out.print(
                f"  model {model['name']}: by reference, sha256 {model['sha256']} "
                "(--with-models copies it)",
                markup=False,
            )


@backup.command(name="list")
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.pass_obj
def list_snapshots(settings: Settings, src: Path) -> None:
    """The snapshots in SRC, oldest first."""
    repo = open_repository(src, _passphrase(settings))
    for snapshot_id in repo.snapshot_ids():
        try:
            m = repo.read_manifest(snapshot_id)
        except BackupError as e:
            out.print(f"{snapshot_id}  DAMAGED: {e}", markup=False)
            continue
        size = sum(f.size for f in m.files)
        out.print(
            f"{snapshot_id}  {m.time}  {len(m.files)} files  {size} bytes  "
            f"({m.bytes_written} new)  owner {m.owner_did}",
            markup=False,
        )


@backup.command()
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.pass_obj
def verify(settings: Settings, src: Path) -> None:
    """Check every object of SRC opens and matches its id, and every snapshot is complete."""
    repo = open_repository(src, _passphrase(settings))
    report = repo.verify()
    for snapshot_id, why in report.bad_snapshots.items():
        out.print(f"snapshot {snapshot_id}: {why}", markup=False)
    for snapshot_id, path, _, problem in report.broken_files:
        out.print(f"snapshot {snapshot_id}: {path}: {problem}", markup=False)
    for object_id, why in report.damaged.items():
        if not any(o == object_id for _, _, o, _ in report.broken_files):
            out.print(f"{why} (used by no snapshot)", markup=False)
    if report.orphans or report.leftovers:
        out.print(
            f"{len(report.orphans)} packs no index names and {len(report.leftovers)} temp files, "
            "left by an interrupted backup (`flurry backup prune` removes them)",
            markup=False,
        )
    if report.unused:
        out.print(f"{report.unused} objects no snapshot uses (an interrupted backup's)")
    out.print(
        f"{report.snapshots} snapshots, {report.objects} objects ({report.bytes} bytes) checked",
        markup=False,
    )
    if not report.ok:
        raise BackupError(f"{src} is damaged: see above")
    out.print("no damage found")


@backup.command()
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.pass_obj
def prune(settings: Settings, src: Path) -> None:
    """Remove the packs and temp files an interrupted backup left in SRC."""
    repo = open_repository(src, _passphrase(settings))
    repo.lock()
    try:
        objects, temps = repo.prune()
    finally:
        repo.unlock()
    out.print(f"removed {objects} unused objects and {temps} temp files")


@click.command(name="restore")
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--snapshot", "snapshot_id", help="Which snapshot (default: the newest).")
@click.pass_obj
def restore_command(settings: Settings, src: Path, snapshot_id: str | None) -> None:
    """Restore the node from SRC into the home (which must not exist yet, or be empty)."""
    result = restore(
        src,
        settings.home,
        _passphrase(settings),
        snapshot_id=snapshot_id,
        say=lambda line: err.print(line),
    )
    out.print(
        f"restored snapshot {result.snapshot} into {result.home}: {result.files} files, "
        f"{result.bytes} bytes",
        markup=False,
    )
    out.print(f"owner DID  {result.owner_did}")
    out.print(f"node DID   {result.node_did}")
    for model in result.models:
        if model.get("sha256") and not model.get("copied"):
            out.print(
                f"  model {model['name']} was backed up by reference (sha256 {model['sha256']}): "
                "catalog models are fetched on first use; put other files back by hand",
                markup=False,
            )


COMMANDS = (backup, restore_command)
