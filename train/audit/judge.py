"""Whether the audited model can judge labels at all: its validation accuracy against chance.

A model at chance level (too few steps, a wrong learning rate, shards of another dataset) still
gives every sample a verdict, and those verdicts flag correct labels as readily as wrong ones. So
the audit records the judge's strength in ``audit.json`` (``judge``), says so in one line, and
``label.suspect`` refuses to drop or relabel on a weak judge's verdicts unless the rule set sets
``force = true``.

Weak: the run's last evaluation is not above chance at 99 % (one-sided): its correct count is at most
``n p0 + 2.326 sqrt(n p0 (1 - p0))``, where ``p0`` is the largest class's share of the validation
samples (what always answering that class scores) and ``n`` their number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

Z_99 = 2.326  # one-sided 99 % normal quantile
RULE = "weak when the validation accuracy is not above the largest class's share at 99 % (one-sided)"


def judge_strength(run_dir: str | Path) -> dict:
    """The judge's last evaluation against chance; ``weak`` is None when the run has no evaluation."""
    path = Path(run_dir) / "metrics.jsonl"
    last = None
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                event = json.loads(line) if line.strip() else {}
                if event.get("event") == "eval" and event.get("count"):
                    last = event
    except (OSError, json.JSONDecodeError):
        last = None
    if last is None:
        return {"run": str(run_dir), "weak": None, "rule": RULE, "why": f"{path}: no evaluation to judge the model by"}
    n = int(last["count"])
    supports = {name: int(c["support"]) for name, c in (last.get("per_class") or {}).items()}
    top = max(supports, key=supports.get) if supports else None
    p0 = supports[top] / n if top is not None else 0.0
    correct = round(float(last["accuracy"]) * n)
    bound = n * p0 + Z_99 * math.sqrt(n * p0 * (1 - p0))
    return {
        "run": str(run_dir),
        "step": last.get("step"),
        "samples": n,
        "accuracy": float(last["accuracy"]),
        "chance": round(p0, 6),
        "chance_class": top,
        "weak": correct <= bound,
        "rule": RULE,
    }


def describe(judge: dict) -> str:
    """One line on a weak judge, for the terminal and the refusal."""
    if judge.get("weak") is None:
        return judge.get("why", "no evaluation")
    return (
        f"validation accuracy {judge['accuracy']:.3f} over {judge['samples']} samples is not above chance "
        f"({judge['chance']:.3f}, always answering {judge['chance_class']!r})"
    )
