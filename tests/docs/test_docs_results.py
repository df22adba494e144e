"""Every measured figure in README.md and docs/*.md can be traced to a saved bench result.

What is checked, mechanically (fenced code blocks are read as text, but their ``#`` lines are
not headings):

1. **Citations resolve.** Every ``bench/results/NAME.json`` a page names exists (a markdown link
   resolved from the page's folder, so it works on GitHub; a name in plain text or backticks from
   the repository root), parses, and holds ``bench``, ``commit``, ``command``, ``machine`` and its
   figures: ``ratios`` (``bench/result_file.py``), or for the noise bench's files saved before that
   module, ``accuracy`` and ``gap_recovered``. A link into ``bench/results/`` leads somewhere.
2. **A RATIO figure cites its run.** A section (from a heading to the next heading of any level)
   that shows a ``RATIO <name> <number>`` figure cites a result file. A figure no saved run backs
   is rerun or goes: the old escape, marking it ``(not rerun since; no saved result)``, is refused.
3. **A measured table cites its run.** In a section whose heading, or a heading above it, says
   "measured", "benchmark" or "speed", every table row that gives a number outside its first
   column cites a result file, unless the table's lead-in (the text between
   the previous heading or table and this table) does, for the whole table. A row of means (its
   first cell starts with "mean") is derived from the rows above it, and cites through them.

What it cannot check: that a cited file holds the very figure shown next to it, and figures in
prose outside such sections; those are for the person who writes them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARK = "not rerun since"  # how unsaved figures were once let through; no page may say it now
RESULT = re.compile(r"bench/results/[\w.+-]+\.json")  # a file's name; a pattern such as noise-<date>-... is none
LINK = re.compile(r"\]\(([^)\s]*bench/results/[^)\s]*)\)")
RATIO_FIGURE = re.compile(r"RATIO\s+\w+`?\s*:?\s*-?\d")
RESULTS_SECTION = re.compile(r"measured|benchmark|speed", re.IGNORECASE)
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
KEYS = {"bench", "commit", "command", "machine"}


def ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in pages]


def sections(text: str) -> list[tuple[list[str], list[str]]]:
    """(headings from the page title down to this one, the section's lines) for every section."""
    out: list[tuple[list[str], list[str]]] = [([], [])]
    trail: list[tuple[int, str]] = []
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else re.match(r"^(#{1,6})\s+(.*)", line)
        if heading:
            level = len(heading.group(1))
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, heading.group(2))]
            out.append(([t for _, t in trail], []))
        else:
            out[-1][1].append(line)
    return out


def cites(text: str) -> bool:
    return bool(RESULT.search(text))


def tables(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(lead-in text, body rows) of every markdown table among ``lines``."""
    found, lead, i = [], [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            rows = []
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append(lines[j])
                j += 1
            found.append(("\n".join(lead), rows))
            lead, i = [], j
        else:
            lead.append(lines[i])
            i += 1
    return found


def gives_numbers(row: str) -> bool:
    return any(re.search(r"\d", cell) for cell in row.strip().strip("|").split("|")[1:])


def citation_problems(page: Path, text: str, *, root: Path = REPO) -> list[str]:
    """Rule 1 on one page: each cited result file that is missing or holds no record."""
    problems = []
    for target in sorted(set(LINK.findall(text))):
        if not (page.parent / target.split("#")[0]).exists():
            problems.append(f"{page.name}: link ({target}): no such file")
    for name in sorted(set(RESULT.findall(text))):
        path = root / name
        if not path.is_file():
            problems.append(f"{page.name}: {name}: no such file")
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            problems.append(f"{page.name}: {name}: not JSON ({exc})")
            continue
        figures = "ratios" in doc or {"accuracy", "gap_recovered"} <= doc.keys()
        if not KEYS <= doc.keys() or not figures:
            problems.append(f"{page.name}: {name}: expected keys {sorted(KEYS)} and ratios, got {sorted(doc)}")
    return problems


def figure_problems(name: str, text: str) -> list[str]:
    """Rules 2 and 3 on one page: each RATIO figure and measured table row that cites nothing."""
    problems = [f"{name}: says {MARK!r}: rerun the figure and cite its result, or remove it"] if MARK in text else []
    for headings, lines in sections(text):
        body = "\n".join(lines)
        where = f"{name}: section {headings[-1] if headings else '(top)'!r}"
        if RATIO_FIGURE.search(body) and not cites(body):
            problems.append(f"{where}: a RATIO figure with no bench/results/ citation")
        if not any(RESULTS_SECTION.search(h) for h in headings):
            continue
        for lead, rows in tables(lines):
            if cites(lead):
                continue
            for row in rows:
                derived = row.strip().strip("|").strip().lower().startswith("mean")
                if gives_numbers(row) and not cites(row) and not derived:
                    problems.append(f"{where}: table row with figures, no citation: {row[:100]}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_cited_result_files_exist_and_hold_a_record(page: Path) -> None:
    assert citation_problems(page, page.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_measured_figures_cite_a_result_file(page: Path) -> None:
    assert figure_problems(page.name, page.read_text(encoding="utf-8")) == []


def test_the_checks_catch_what_they_describe(tmp_path: Path) -> None:
    (tmp_path / "bench" / "results").mkdir(parents=True)
    good = {"bench": "x", "commit": "abc", "command": "python bench/x_bench.py", "machine": {}, "ratios": {"x": 1.0}}
    (tmp_path / "bench" / "results" / "x-good.json").write_text(json.dumps(good), encoding="utf-8")
    (tmp_path / "bench" / "results" / "x-bare.json").write_text(json.dumps({"bench": "x"}), encoding="utf-8")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    text = f"""# Page

## Speed

Measured ([run](../bench/results/x-good.json)):

| run | img/s |
|---|---|
| full | 90.1 |

```bash
# a comment in a code block, not a heading
RATIO x_vs_y 1.07
```

## Measured again

| run | img/s |
|---|---|
| full ([run](../bench/results/x-good.json)) | 90.1 |
| quick | 80.2 |
| old ({MARK}; no saved result) | 70.3 |
| mean | 80.2 |
| no figures | - |

## Prose

`RATIO x_vs_y 1.07` from `bench/results/x-missing.json`, [this](../bench/results/x-gone.json) \
and `bench/results/x-bare.json`;
a name pattern such as `bench/results/x-<date>-<commit>.json` is no citation.

## Other

`RATIO x_vs_y 1.07`, nothing cited.
"""
    assert citation_problems(page, text, root=tmp_path) == [
        "page.md: link (../bench/results/x-gone.json): no such file",
        "page.md: bench/results/x-bare.json: expected keys ['bench', 'command', 'commit', 'machine'] and ratios, "
        "got ['bench']",
        "page.md: bench/results/x-gone.json: no such file",
        "page.md: bench/results/x-missing.json: no such file",
    ]
    assert figure_problems("page.md", text) == [
        f"page.md: says {MARK!r}: rerun the figure and cite its result, or remove it",
        "page.md: section 'Measured again': table row with figures, no citation: | quick | 80.2 |",
        "page.md: section 'Measured again': table row with figures, no citation: "
        f"| old ({MARK}; no saved result) | 70.3 |",
        "page.md: section 'Other': a RATIO figure with no bench/results/ citation",
    ]
