"""What a build has finished: ``build_config.json`` plus one journal entry per planned shard.

``SHARDS/build_config.json`` holds the options that decide the output bytes, the manifest's
checksum and the versions of the libraries that encode pixels, and their fingerprint. A
rerun (or another partition) with a different fingerprint is refused instead of mixing two
builds in one folder.

``SHARDS/_journal/<split>/<planned>.json`` is written atomically after a planned shard's
tars are renamed into place, and records their names, sizes and sha256, the samples (id,
key, tar, label id, decode path), the failed samples with their reason, and pixel sums for
the dataset mean/std. One small file per shard (not one shared log) lets K partitions on K
machines write to shared storage without locks; ``--finalize`` reads them all.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from pawpipe.common.atomic import write_json
from pawpipe.common.contracts.tar_layout import index_path

FORMAT = 1
JOURNAL_DIR = "_journal"
BUILD_CONFIG = "build_config.json"
_LIBRARIES = ("pillow", "nvidia-dali-cuda130", "numpy")


def libraries() -> dict[str, str | None]:
    """Versions of the libraries whose code decides the pixels and bytes written."""
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def build_document(options: dict, *, manifest_dir: Path, manifest_sha256: str, root: Path) -> dict:
    """The content of build_config.json; ``fingerprint`` covers everything that decides the bytes."""
    decisive = {"format": FORMAT, "options": options, "manifest_sha256": manifest_sha256, "libraries": libraries()}
    digest = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()
    return {**decisive, "manifest_dir": str(manifest_dir.resolve()), "root": str(root), "fingerprint": digest}


def record_build(out: Path, document: dict) -> None:
    """Write build_config.json, or check that the one already there describes the same build."""
    path = out / BUILD_CONFIG
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable ({exc}); remove it and the folder's shards to start over") from None
        if old.get("fingerprint") != document["fingerprint"]:
            changed = (
                ", ".join(f"{key}: {was} -> {now}" for key, was, now in _differences(old, document))
                or "another fingerprint"
            )
            raise ValueError(
                f"{out}: holds a build with other options: {changed}; use a new --out folder, or delete this one to "
                "rebuild"
            )
        return
    write_json(path, document)


def _differences(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """``(field, old, new)`` for each decisive field that differs: an option by its name (``size``), the
    manifest as ``manifest_sha256`` (first 12 hex digits), a library as ``pillow``; ``None`` when absent."""
    found = []
    for section in ("options", "libraries"):
        was, now = old.get(section) or {}, new.get(section) or {}
        found += [
            (key, was.get(key), now.get(key)) for key in dict.fromkeys([*was, *now]) if was.get(key) != now.get(key)
        ]
    if old.get("manifest_sha256") != new.get("manifest_sha256"):  # a digest: its start tells them apart
        found.append(("manifest_sha256", str(old.get("manifest_sha256"))[:12], str(new.get("manifest_sha256"))[:12]))
    if old.get("format") != new.get("format"):
        found.append(("format", old.get("format"), new.get("format")))
    return found


def read_build(out: Path) -> dict:
    path = out / BUILD_CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: expected the build's config (is {out} a shards folder?): {exc}") from None


def entry_path(out: Path, split: str, planned: str) -> Path:
    return out / JOURNAL_DIR / split / f"{planned}.json"


def write_entry(out: Path, entry: dict) -> None:
    write_json(entry_path(out, entry["split"], entry["planned"]), entry)


def read_entry(out: Path, split: str, planned: str) -> dict | None:
    """The journal entry of a planned shard, or None when it has none (not finished)."""
    try:
        return json.loads(entry_path(out, split, planned).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):  # cannot happen with atomic writes; treat as unfinished
        return None


def is_finished(out: Path, entry: dict | None, fingerprint: str) -> bool:
    """True when the entry belongs to this build and its tars and indexes are all in place at full size."""
    if entry is None or entry.get("fingerprint") != fingerprint:
        return False
    folder = out / entry["split"]
    for part in entry["parts"]:
        tar = folder / part["shard"]
        try:
            if tar.stat().st_size != part["bytes"] or not index_path(tar).is_file():
                return False
        except OSError:
            return False
    return True
