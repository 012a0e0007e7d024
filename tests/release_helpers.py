"""Skill releases for tests: real wheels of a small echo skill, signed release manifests, and
a release put straight into a node's pod at the layout every node reads
(/pod/public/skills/NAME/VERSION/{manifest.json, wheel}).

``put_release`` writes with the pod store; the publish command (`flurry skills publish`) is the
production way and writes the same layout."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from typing import Any

from skills.manifest import Manifest
from skills.release import make_release

TEXT_PARAM = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}

SKILL_SOURCE = """
import json
from skills.sdk import Skill

MANIFEST = json.loads(%r)

def echo(text):
    return MANIFEST["version"] + ":" + text

def skill():
    return Skill(manifest=MANIFEST, tools={t["name"]: echo for t in MANIFEST["tools"]})
"""


def skill_manifest(
    name: str,
    version: str,
    *,
    description: str = "Echoes a text back.",
    permissions: tuple[str, ...] = (),
    tools: list[dict] | None = None,
) -> dict:
    tool = name.replace("-", "_") + "_echo"
    return {
        "name": name,
        "version": version,
        "description": f"The {name} skill.",
        "permissions": list(permissions),
        "tools": tools or [{"name": tool, "description": description, "parameters": TEXT_PARAM}],
    }


def wheel_bytes(
    manifest: dict,
    *,
    extra: dict[str, bytes] | None = None,
    record_extra: tuple[str, ...] = (),
    links: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    """(file name, bytes) of a real wheel of the echo skill whose code lists ``manifest``."""
    dist, version = manifest["name"].replace("-", "_"), manifest["version"]
    module = f"{dist}_skill"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{module}.py": (SKILL_SOURCE % json.dumps(manifest)).encode(),
        **(extra or {}),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: flurry-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[flurry.skills]\n{manifest['name']} = {module}:skill\n".encode(),
    }
    record = f"{info}/RECORD"
    lines = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    files[record] = ("\n".join([*lines, *record_extra, f"{record},,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        for name, points_to in (links or {}).items():
            link = zipfile.ZipInfo(name)
            link.external_attr = (0o120777 << 16) | 0x10
            z.writestr(link, points_to)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


def release_for(manifest: dict, filename: str, wheel: bytes, key, did: str) -> dict[str, Any]:
    """The signed release manifest of ``wheel``, promising what ``manifest`` says."""
    return make_release(Manifest.from_dict(manifest), filename, wheel, key, did)


def put_release(
    node,
    base: str,
    name: str,
    version: str,
    manifest: bytes | dict | None,
    wheel: tuple[str, bytes] | None,
    *,
    manifest_type: str = "application/json",
) -> str:
    """Put a release into ``node``'s pod at NAME/VERSION (the folders may lie: tests of
    replays); returns the manifest's URL. ``base``: the node's served URL."""
    folder = f"/pod/public/skills/{name}/{version}/"
    if manifest is not None:
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        node.pod.put(folder + "manifest.json", body, manifest_type, base=base + folder)
    if wheel is not None:
        node.pod.put(folder + wheel[0], wheel[1], "application/octet-stream", base=base + folder)
    return f"{base}{folder}manifest.json"
