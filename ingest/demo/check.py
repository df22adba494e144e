"""``ingest demo-check``: did a cleaning run catch every fault the demo generator injected?"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl


def check(raw: str | Path, out: str | Path) -> list[dict]:
    """One row per injected fault or oddity: what was expected and whether the outputs show it."""
    expected = json.loads((Path(raw) / "expected.json").read_text(encoding="utf-8"))
    out = Path(out)
    manifest = pl.read_parquet(out / "manifest.parquet")
    quarantine = pl.read_parquet(out / "quarantine.parquet")
    orphans = set(pl.read_parquet(out / "orphans.parquet").get_column("image_path").to_list())

    def rows(frame: pl.DataFrame, e: dict) -> pl.DataFrame:
        record = pl.col("record").is_null() if e.get("record") is None else pl.col("record") == e["record"]
        return frame.filter((pl.col("source_file") == e["source_file"]) & record)

    results = []
    for e in expected["quarantined"]:
        hit = rows(quarantine, e).filter(pl.col("rule").list.contains(e["rule"])).height > 0
        results.append({"fault": e["fault"], "expect": f"quarantined as {e['rule']}", "ok": hit})
    for e in expected["repaired"]:
        hit = (
            rows(manifest, e)
            .filter(pl.col("repairs").list.eval(pl.element().str.starts_with(e["rule"])).list.any())
            .height
            > 0
        )
        results.append({"fault": e["fault"], "expect": f"kept, repaired by {e['rule']}", "ok": hit})
    for e in expected["kept_oddities"]:
        got = rows(manifest, e).select("image_format", "image_mode").rows()
        hit = got == [(e["image_format"], e["image_mode"])]
        results.append({"fault": e["fault"], "expect": f"kept as {e['image_format']} {e['image_mode']}", "ok": hit})
    for path in expected["orphans"]:
        results.append({"fault": "orphan_image", "expect": f"orphan {path.rsplit('/', 1)[-1]}", "ok": path in orphans})
    for e in expected["warned"]:
        n = manifest.filter(
            (pl.col("source_file") == e["source_file"]) & pl.col("warnings").list.contains(e["rule"])
        ).height
        results.append(
            {
                "fault": "metadata_size_lies",
                "expect": f"kept, warned {e['rule']} x{e['frames']}",
                "ok": n == e["frames"],
            }
        )
    return results


def format_table(results: list[dict]) -> str:
    """One line per kind of fault (records of the same kind counted together)."""
    kinds: dict[tuple[str, str], list[bool]] = {}
    for r in results:
        expect = "orphan image reported" if r["fault"] == "orphan_image" else r["expect"]
        kinds.setdefault((r["fault"], expect), []).append(r["ok"])
    width = max(len(fault) for fault, _ in kinds)
    lines = [f"{'injected':<{width}}  {'expected':<40} caught"]
    lines += [f"{f:<{width}}  {e:<40} {sum(oks)}/{len(oks)}" for (f, e), oks in kinds.items()]
    caught = sum(r["ok"] for r in results)
    lines.append(f"{caught} of {len(results)} injected faults and oddities handled as expected")
    return "\n".join(lines)
