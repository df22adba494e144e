"""``--json`` means one thing in every command: print the result as JSON on stdout, nothing else."""

from __future__ import annotations

import json

from pawpipe.train.cli import main


def test_plan_json_prints_json_only(tmp_path, capsys) -> None:
    assert (
        main(
            [
                "plan",
                "--gpu-memory",
                "12GiB",
                "--image-size",
                "96",
                "--amp",
                "fp16",
                "--steps-per-epoch",
                "100",
                "--json",
                "--out",
                str(tmp_path / "plan.json"),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "plan.json").read_text()) and {"memory", "lr"} <= set(printed)
