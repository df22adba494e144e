"""The installed names: one package, ``pawpipe``, mapped onto the repository's folders.

setuptools cannot add the ``pawpipe.`` prefix to the packages it finds, so pyproject.toml lists them;
a package left out of the list would import here (the editable install maps whole folders) and be
missing from a wheel, silently. The list must be every folder with an ``__init__.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("common", "validation_rules", "ingest", "shards", "train")


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_folder_is_listed_under_the_namespace() -> None:
    found = sorted(
        "pawpipe." + ".".join(p.parent.relative_to(REPO).parts)
        for top in FOLDERS
        for p in (REPO / top).rglob("__init__.py")
    )
    assert sorted(_setuptools()["packages"]) == found
    assert _setuptools()["package-dir"] == {f"pawpipe.{top}": top for top in FOLDERS}
    assert list(_setuptools()["package-data"]) == ["pawpipe.validation_rules"]  # the rules' default.toml


def test_only_pawpipe_is_importable_outside_the_repository(tmp_path: Path) -> None:
    probe = (
        "import importlib.util, pawpipe.train.cli, pawpipe.validation_rules;"
        "print([m for m in ('common', 'train', 'ingest', 'shards', 'validation_rules') if importlib.util.find_spec(m)])"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
