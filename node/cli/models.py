"""The models: list, fetch, pull, recommend, use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from agent.model_sources import resolve_source
from agent.models import (
    CATALOG,
    HUB_CATALOG,
    ModelError,
    installed_models,
    other_models,
    resolve_model,
)
from agent.ollama import PREFIX as OLLAMA_PREFIX
from agent.ollama import find_model as find_ollama_model
from agent.ollama import list_models as list_ollama_models
from agent.ollama import models_folder as ollama_models_folder
from agent.pull import pull, read_record
from agent.recommend import describe, probe, recommend
from node import remote_models
from node.cli.common import (
    Settings,
    _done,
    _owner,
    err,
    out,
)


@click.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """List the models: the defaults, the catalog to pull from, what is here, what is in use."""
    if ctx.invoked_subcommand:
        return

    settings: Settings = ctx.obj
    config = settings.home.load_config()
    chosen = (config.chat_model, config.embedding_model)
    folder = settings.home.models
    for model, path in installed_models(folder):
        state = f"fetched  {path}" if path else "not fetched (fetched on first use)"
        out.print(
            f"{'*' if model.name in chosen else ' '} {model.name:<28} {model.kind:<9} {state}",
            markup=False,
        )
        out.print(f"    {model.description}", markup=False)
    out.print("Catalog (flurry models pull NAME; `flurry models recommend` says what fits):")
    for hub_model in HUB_CATALOG.values():
        path = folder / hub_model.filename
        state = "pulled" if path.is_file() else "not pulled"
        pin = f"sha256 {hub_model.sha256[:12]}…" if hub_model.sha256 else "unpinned"
        out.print(
            f"{'*' if hub_model.name in chosen else ' '} {hub_model.name:<28} chat      {state}; {hub_model.size_gb:.1f} GB, "
            f"~{hub_model.ram_gb:.1f} GB RAM, context {hub_model.context}; {pin}",
            markup=False,
        )
        out.print(f"    {hub_model.description}  ({hub_model.source})", markup=False)
    hub_files = {m.filename for m in HUB_CATALOG.values()}
    here = other_models(folder)
    if here:
        out.print(f"In {folder}:")
    for path in here:
        record = read_record(path) or {}
        in_use = (
            path.name in chosen
            or str(path) in chosen
            or any(HUB_CATALOG[c].filename == path.name for c in chosen if c in HUB_CATALOG)
        )
        name = (
            path.name
            if path.name not in hub_files
            else f"{path.name} ({next(m.name for m in HUB_CATALOG.values() if m.filename == path.name)})"
        )
        out.print(
            f"{'*' if in_use else ' '} {name}  {_size(path.stat().st_size)}  sha256 {record.get('sha256', 'not recorded (not pulled by flurry)')}",
            markup=False,
        )
        if record:
            out.print(
                f"    from {record.get('source')}  ({record.get('checked')}, {record.get('pulled')})",
                markup=False,
            )
    # Ollama's models, loaded where they lie (agent.ollama); a section only where Ollama is.
    listed: set[str] = set()
    ollama_folder = ollama_models_folder()
    if ollama_folder is not None:
        out.print(
            f"Ollama's, in {ollama_folder} (flurry models use chat ollama:NAME; no copy):",
            markup=False,
        )
        ollama_models = list_ollama_models(ollama_folder)
        if not ollama_models:
            out.print("  none yet (`ollama pull NAME`)", markup=False)
        for ollama_name, found in ollama_models:
            name = OLLAMA_PREFIX + ollama_name
            listed.add(name)
            if isinstance(found, ModelError):
                out.print(f"  {name}  not usable: {found}", markup=False)
            else:
                out.print(
                    f"{'*' if name in chosen else ' '} {name}  {_size(found.size)}  sha256 {found.sha256}",
                    markup=False,
                )
    for kind, name in (("chat", config.chat_model), ("embedding", config.embedding_model)):
        if name.startswith(OLLAMA_PREFIX):
            if name not in listed:
                out.print(f"* {name}  ({kind}, not in Ollama's models folder)", markup=False)
        elif name not in CATALOG and name not in HUB_CATALOG and not (folder / name).is_file():
            out.print(f"* {name}  ({kind}, your own GGUF)", markup=False)


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


@models.command("fetch")
@click.argument("names", nargs=-1)
@click.pass_obj
def models_fetch(settings: Settings, names: tuple[str, ...]) -> None:
    """Fetch default models now (default: the configured ones)."""
    config = settings.home.load_config()
    for name in names or (config.chat_model, config.embedding_model):
        path = resolve_model(name, settings.home.models, say=lambda line: err.print(line))
        out.print(f"{name}: {path}")


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text.upper())
    if not match:
        raise click.BadParameter(f"{text!r}: a size such as 800M or 4G", param_hint="--max-size")
    return int(float(match[1]) * 1000 ** ("_KMGT".index(match[2]) if match[2] else 0))


@models.command("pull")
@click.argument("source")
@click.option("--name", help="The file name in the models folder (default: the URL's).")
@click.option(
    "--sha256",
    "sha256",
    metavar="HEX",
    help="The digest the publisher gives: refuse and delete the file if it differs.",
)
@click.option(
    "--max-size", default="64G", show_default=True, help="Refuse a file larger than this (e.g. 4G)."
)
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    help="Seconds to wait for the server before giving up (the pull can be resumed).",
)
@click.pass_obj
def models_pull(
    settings: Settings,
    source: str,
    name: str | None,
    sha256: str | None,
    max_size: str,
    timeout: float,
) -> None:
    """Download a GGUF chat model: a catalog name, hf:OWNER/REPO/FILE.gguf[@REV] or an https:// URL.

    Run it again after an interruption: it continues where it stopped. Needs no passphrase and
    works while `flurry serve` runs (the models folder is not part of the sealed home)."""

    label = resolve_source(
        source, name, sha256
    ).filename  # refuses a bad source before anything is drawn
    if settings.home.models.is_relative_to(settings.home.root) and not settings.home.root.exists():
        # the models folder is the first thing in a new home: the home stays private, as `init` makes it
        settings.home.root.mkdir(parents=True, mode=0o700)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    task = None

    def progress(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task(label, total=total, completed=done)
        bar.update(task, completed=done, total=total)

    with bar:
        pulled = pull(
            source,
            settings.home.models,
            name=name,
            sha256=sha256,
            max_bytes=_parse_size(max_size),
            timeout=timeout,
            progress=progress,
            say=lambda line: err.print(line, markup=False),
        )
    label = pulled.source if pulled.source in HUB_CATALOG else pulled.path.name
    if pulled.already:
        out.print(f"already pulled: {pulled.path}", markup=False)
    else:
        resumed = f", resumed after {_size(pulled.resumed_at)}" if pulled.resumed_at else ""
        out.print(f"pulled {pulled.path} ({_size(pulled.size)}{resumed})", markup=False)
    out.print(f"sha256 {pulled.sha256}  ({pulled.checked})", markup=False)
    out.print(f"use it: flurry models use chat {label}", markup=False)


@models.command("recommend")
def models_recommend() -> None:
    """Which catalog models fit this machine (cores, memory, GPU), and the command to get one."""

    machine = probe()
    fits, best = recommend(machine)
    out.print(f"This machine: {describe(machine)}", markup=False)
    marks = {"gpu": "+", "good": "+", "slow": "~", "tight": "~", "no": "-"}
    for f in fits:
        out.print(
            f"{marks[f.verdict]} {f.model.name:<24} {f.model.size_gb:.1f} GB  {f.reason}",
            markup=False,
        )
    if best is None:
        out.print(
            "None of the catalog models runs comfortably here; the default model keeps answering.",
            markup=False,
        )
        return
    out.print(f"Recommended: {best.model.name} ({best.model.description})", markup=False)
    out.print(
        f"  flurry models pull {best.model.name} && flurry models use chat {best.model.name}",
        markup=False,
    )


@models.command("use")
@click.argument("kind", type=click.Choice(["chat", "embedding"]))
@click.argument("model")
@click.pass_obj
def models_use(settings: Settings, kind: str, model: str) -> None:
    """Use a default or pulled model, a file in the models folder, your own GGUF file, one of
    Ollama's (ollama:NAME[:TAG], loaded from Ollama's folder without a copy), or (for chat)
    remote:NAME, a server added with `flurry models remote add`."""
    settings.home.require()
    folder = settings.home.models
    if model.startswith(remote_models.PREFIX):
        if kind != "chat":
            raise click.ClickException("a remote server answers chat; embeddings stay on this box")
        with _owner(settings) as owner:
            names = [r["name"] for r in owner.list_remote_models()]
        if model.removeprefix(remote_models.PREFIX) not in names:
            raise click.ClickException(
                f"no remote model {model!r} ({', '.join(names) or 'none added'}): "
                "add it with `flurry models remote add NAME URL`"
            )
    elif model.startswith(OLLAMA_PREFIX):
        # Refuses a name Ollama does not have or cannot be loaded; kept as `ollama list` names it.
        model = OLLAMA_PREFIX + find_ollama_model(model).name
    elif model in HUB_CATALOG:
        resolve_model(
            model, folder
        )  # refuses a model not pulled yet, with the command that pulls it
    elif model not in CATALOG:
        path = Path(model).expanduser().absolute()
        if path.is_file():
            model = str(path)
        elif "/" not in model and (folder / model).is_file():
            pass  # a pulled file, named as it is in the models folder (which FLURRY_MODELS may move)
        else:
            known = ", ".join([*CATALOG, *HUB_CATALOG])
            raise click.ClickException(
                f"{model}: no such GGUF file, not in {folder}, and not a catalog name ({known})"
            )
    config = settings.home.load_config()
    setattr(config, f"{kind}_model", model)
    settings.home.save_config(config)
    out.print(f"{kind} model: {model}", markup=False)
    if model.startswith(remote_models.PREFIX):
        out.print(
            "Your questions and the notes they draw on will go to that server; peers' questions "
            "stay with the local model unless you added it with --allow-peers.",
            markup=False,
        )
    if settings.home.running_node():
        out.print("flurry serve is running: restart it to load the new model", markup=False)


@models.group("remote")
def models_remote() -> None:
    """OpenAI-compatible servers on other boxes (llama-server, vLLM, Ollama, LM Studio)."""


@models_remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--model", default="", help="The model's name on that server (default: its choice).")
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file holding the server's API key; the key is kept sealed in the vault.",
)
@click.option(
    "--allow-peers",
    is_flag=True,
    help="Peers' questions go there too (without a receipt); by default the local model answers them.",
)
@click.pass_obj
def models_remote_add(
    settings: Settings, name: str, url: str, model: str, key_file: Path | None, allow_peers: bool
) -> None:
    """Name a server: `flurry models use chat remote:NAME` then sends your prompts there."""
    key = None
    if key_file is not None:
        if key_file.stat().st_size > remote_models.MAX_KEY_CHARS:
            raise click.ClickException(f"{key_file} is too large to hold an API key")
        key = key_file.read_text(errors="replace").strip()
    with _owner(settings) as owner:
        added = _done(owner.add_remote_model(name, url, model, key, allow_peers))
    out.print(
        f"remote:{added['name']}  {added['url']}"
        + (f"  model {added['model']}" if added["model"] else "")
        + ("  key sealed" if added["key"] else "")
        + ("  peers too" if added["allow_peers"] else ""),
        markup=False,
    )
    out.print(f"use it: flurry models use chat remote:{added['name']}", markup=False)


@models_remote.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def models_remote_list(settings: Settings, as_json: bool) -> None:
    with _owner(settings) as owner:
        found = owner.list_remote_models()
    if as_json:
        click.echo(json.dumps(found))
        return
    if not found:
        out.print("no remote models: flurry models remote add NAME URL")
    for r in found:
        out.print(
            f"remote:{r['name']}  {r['url']}  model {r['model'] or '(the server’s)'}  "
            f"key {r['key'] or 'none'}  peers {'yes' if r['allow_peers'] else 'no'}",
            markup=False,
        )


@models_remote.command("remove")
@click.argument("name")
@click.pass_obj
def models_remote_remove(settings: Settings, name: str) -> None:
    with _owner(settings) as owner:
        removed = owner.remove_remote_model(name)
    out.print(f"removed remote:{name}" if removed else f"no remote model {name!r}", markup=False)


COMMANDS = (models,)
