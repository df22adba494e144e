"""The executor seam without a cluster: local pool order and bounded window, the options, no Ray installed."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pawpipe.common.executor import (
    LAYER_FOLDERS,
    LocalExecutor,
    current_executor,
    import_root,
    open_executor,
    use_executor,
)
from pawpipe.ingest.config import CleanConfig
from pawpipe.shards.config import ShardConfig, load_shard_config

REPO = Path(__file__).resolve().parents[2]


def test_local_pool_yields_in_order_and_keeps_a_bounded_window() -> None:
    pulled = []

    def jobs():
        for i in range(40):
            pulled.append(i)
            yield i

    seen = []
    for result in LocalExecutor().map(math.factorial, jobs(), workers=2):
        seen.append(result)
        assert len(pulled) <= len(seen) + 4  # 2 workers: at most 2 x 2 jobs ahead of the caller
    assert seen == [math.factorial(i) for i in range(40)]


def test_one_worker_runs_in_process_and_the_default_executor_is_local() -> None:
    assert list(LocalExecutor().map(math.factorial, iter(range(5)), workers=1)) == [1, 1, 2, 6, 24]
    assert isinstance(current_executor(), LocalExecutor)
    mine = LocalExecutor()
    with use_executor(mine):
        assert current_executor() is mine
    assert current_executor() is not mine


def test_ray_address_without_the_ray_executor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ray_address '127.0.0.1:6379' is only used with executor 'ray'"):
        ShardConfig(manifest_dir=tmp_path, out=tmp_path, ray_address="127.0.0.1:6379")
    assert CleanConfig(root=tmp_path, out=tmp_path, executor="ray").ray_address is None


@pytest.mark.parametrize(
    ("tool", "command", "data"), [("ingest", "clean", "demo_raw"), ("shards", "build", "demo_clean")]
)
def test_executor_ray_without_ray_installed_names_the_extra(
    tool: str, command: str, data: str, request, tmp_path: Path
) -> None:
    argv = [command, str(request.getfixturevalue(data)), "--out", str(tmp_path / "out"), "--executor", "ray", "--quiet"]
    # `import ray` fails as it does where the extra is not installed.
    code = f"import sys; sys.modules['ray'] = None; from {tool}.cli import main; sys.exit(main({argv!r}))"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert (
        run.stderr.strip()
        == f"{tool}: error: executor 'ray': Ray is not installed; install the extra: pip install 'pawpipe[ray]'"
    )


def test_executor_ray_with_nothing_at_the_address_fails_in_one_line() -> None:
    pytest.importorskip("ray", reason="needs the extra: pip install 'pawpipe[ray]'")
    from pawpipe.common.executor import RayExecutor

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ValueError, match=rf"^executor 'ray': no Ray cluster at address '127.0.0.1:{port}' \(Connection refused\)"
    ):
        RayExecutor(f"127.0.0.1:{port}")


def test_the_executor_comes_from_toml_and_the_flags_override_it(tmp_path: Path) -> None:
    toml = tmp_path / "shards.toml"
    toml.write_text('executor = "ray"\nray_address = "head:6379"\n')
    config = load_shard_config(toml, {"manifest_dir": tmp_path, "out": tmp_path / "o", "ray_address": None})
    assert (config.executor, config.ray_address) == ("ray", "head:6379")
    config = load_shard_config(toml, {"manifest_dir": tmp_path, "out": tmp_path / "o", "ray_address": "10.0.0.1:6379"})
    assert config.ray_address == "10.0.0.1:6379"
    assert isinstance(open_executor(ShardConfig(manifest_dir=tmp_path, out=tmp_path)), LocalExecutor)


def test_ray_workers_import_this_checkout_as_pawpipe(tmp_path: Path) -> None:
    """The folder the Ray workers get on their PYTHONPATH holds pawpipe/<folder> for every folder, each the
    checkout's own; a fresh interpreter with nothing else on its path (no site-packages, so no editable
    install) finds this checkout's code there."""
    root = import_root()
    repo = Path(__file__).resolve().parents[2]
    assert root == repo / ".pythonpath"
    assert {p.name: p.resolve() for p in (root / "pawpipe").iterdir()} == {n: repo / n for n in LAYER_FOLDERS}
    assert import_root() == root  # a second driver finds the links made
    probe = "import importlib.util; print(importlib.util.find_spec('pawpipe.shards').origin)"  # -S: no polars
    done = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(root)!r}); {probe}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert Path(done.stdout.strip()).resolve() == repo / "shards" / "__init__.py", done.stderr[-2000:]
