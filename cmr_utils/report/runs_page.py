"""``reports/index.html``: every run under ``reports/`` in one offline interactive table, newest first.

A row per run folder (a grid is one row, its points folded into it): when it finished, the code
commit, the data fingerprint, the encoders, the chosen configuration and its test medR and R@10
in both directions (the split's main protocol, as in the run's own index), its status, and a link.
The runner records each finished point in ``run.json`` (``record``) and rewrites this page after
every run; a run older than this record shows what its files still tell.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import itables
import pandas as pd
from itables.javascript import generate_init_offline_itables_html

from cmr_utils.report import index as report
from cmr_utils.evaluate import results as R
from cmr_utils.report import tables as T
from cmr_utils.io import locked, save_json, save_text
from cmr_utils.paths import ROOT, sources
from cmr_utils.runner.notebooks import NOTEBOOK_DIR, NOTEBOOKS

HEADLINE = [(d, m) for d in T.DIRECTIONS for m in ("medr", "r10")]  # the test numbers a row shows


def code_key() -> str:
    """A hash of the package and the notebooks: a run recorded under another key is out of date with the code."""
    h = hashlib.sha1()
    for f in sources() + sorted(NOTEBOOK_DIR.glob("*.py")):
        h.update(str(f.relative_to(ROOT)).encode() + f.read_bytes())
    return h.hexdigest()[:16]


def record(run_dir: Path, steps: list[dict]) -> None:
    """Write ``run_dir/run.json``: when the run ended, its commit and code, and how each notebook went."""
    save_json(Path(run_dir) / "run.json", {"finished": datetime.now().isoformat(timespec="seconds"),
                                           "commit": report._git(), "code": code_key(), "steps": steps})


def write(reports_dir: str | Path) -> Path:
    """Rewrite ``reports_dir/index.html`` from the run folders in it (atomically, one writer at a time)."""
    reports_dir = Path(reports_dir)
    page = reports_dir / "index.html"
    with locked(reports_dir / ".runs"):
        rows = runs(reports_dir)
        save_text(page, T.render("runs.html.j2", title=f"cmr runs: {reports_dir.resolve()}", count=len(rows),
                                 table=_table(rows),
                                 itables_init=generate_init_offline_itables_html(itables.options.dt_bundle)))
    return page


def runs(reports_dir: Path) -> list[dict]:
    """One summary per run folder (``params.yaml``) or grid folder (point folders with one), newest first."""
    code = code_key()
    rows = [_readable(d, code) for d in sorted(Path(reports_dir).iterdir()) if d.is_dir() and not d.name.startswith(".")]
    return sorted(filter(None, rows), key=lambda r: r["when"], reverse=True)


def _readable(run_dir: Path, code: str) -> dict | None:
    """A folder's summary, or a row saying why it could not be read: one damaged folder must not stop the page
    (nor the run that rewrites it)."""
    try:
        return summary(run_dir, code)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file raises
        return {"name": run_dir.name, "dir": run_dir, "when": _mtime(run_dir)[:16].replace("T", " "), "commit": "",
                "data": "", "encoders": "", "chosen": "", "numbers": {}, "points": [],
                "status": f"unreadable: {type(e).__name__}: {e}"}


def summary(run_dir: Path, code: str | None = None) -> dict | None:
    """What the runs page, ``compare`` and ``tracking`` say about a run folder (``params.yaml``) or a grid
    folder (point folders with one); None for another folder."""
    code = code or code_key()
    if (run_dir / "params.yaml").exists():
        return _run(run_dir, code)
    points = sorted(p for p in run_dir.iterdir() if (p / "params.yaml").exists())
    return _grid(run_dir, [_run(p, code) for p in points]) if points else None


def _run(run_dir: Path, code: str) -> dict:
    log = _json(run_dir / "run.json")
    steps = log.get("steps") or []
    done = {p.name for p in (run_dir / ".stamps").glob("*")}
    if steps:
        failed = next((s["notebook"] for s in steps if not s["ok"]), None)
        status = f"failed at {failed}" if failed else "complete"
    else:  # no record: a run from before it, or one that never ended
        status = "complete" if done >= set(NOTEBOOKS) else "incomplete"
    if log and log.get("code") != code:
        status += ", out of date with the code"
    when = log.get("finished") or _mtime(run_dir / "index.html")
    row = {"name": run_dir.name, "dir": run_dir, "when": when.replace("T", " ")[:16], "commit": log.get("commit", "unknown"),
           "data": _json(run_dir / "features.json").get("data", {}).get("fingerprint", ""), "encoders": "",
           "chosen": "", "numbers": {}, "status": status, "points": []}
    evaluated = any(s["notebook"] == "03_evaluate" and s["ok"] for s in steps) if steps else "03_evaluate" in done
    if evaluated and (run_dir / "results.csv").exists():
        res = R.load(run_dir)
        c = T.chosen_config(res)
        test = T.rows_of(res, c, "test").set_index("direction")
        row.update(encoders=f"{c.image_encoder} + {c.text_encoder}", chosen=report._describe(c, point=False),
                   numbers={(d, m): float(test.at[d, m]) for d, m in HEADLINE})
    return row


def _grid(grid_dir: Path, points: list[dict]) -> dict:
    """A grid's row: its best point's choice and numbers (as its own index heads with), its points folded in."""
    failed = [p["name"] for p in points if not p["status"].startswith("complete")]
    status = f"{len(failed)} of {len(points)} points not complete: {', '.join(failed)}" if failed else "complete"
    if any("out of date" in p["status"] for p in points):
        status += ", out of date with the code"
    row = {"name": grid_dir.name, "dir": grid_dir, "when": max(p["when"] for p in points), "status": status,
           "encoders": "", "chosen": "", "numbers": {}, "points": points,
           **{k: ", ".join(sorted({p[k] for p in points if p[k]})) for k in ("commit", "data")}}
    if (grid_dir / "results.csv").exists():
        head = report.best_point(grid_dir, R.load(grid_dir))
        best = next((p for p in points if p["name"] == head), None)
        if best and best["numbers"]:
            row.update(encoders=best["encoders"], chosen=f"{best['chosen']} @ {head}", numbers=best["numbers"])
    return row


def _table(rows: list[dict]) -> str:
    """The rows as a DataTable (search, per-column filters and order), its JavaScript inlined: the page works offline."""
    df = pd.DataFrame([{
        "run": f"<a href='{r['name']}/index.html'>{r['name']}</a>", "when": r["when"], "status": r["status"],
        "commit": r["commit"], "data fingerprint": r["data"], "encoders": r["encoders"], "chosen": r["chosen"],
        **{f"{T.METRICS[m]} {T.DIRECTIONS[d]}": round(r["numbers"][d, m], 2) if (d, m) in r["numbers"] else "–"
           for d, m in HEADLINE},  # a run without test numbers (failed, still running) shows a dash, not NaN
        "points": T.render("runs_points.html.j2", grid=r["name"], points=r["points"], headline=HEADLINE,
                           directions=T.DIRECTIONS, metrics=T.METRICS) if r["points"] else ""}
        for r in rows], columns=["run", "when", "status", "commit", "data fingerprint", "encoders", "chosen",
                                 *(f"{T.METRICS[m]} {T.DIRECTIONS[d]}" for d, m in HEADLINE), "points"])
    return itables.to_html_datatable(
        df, connected=False, table_id="runs", showIndex=False, maxBytes=0, allow_html=True, scrollX=True,
        pageLength=25, lengthMenu=[10, 25, 100, {"label": "All", "value": -1}], order=[],
        # not itables' default layout, which drops the search box from a table of one page: a few runs are searched too
        layout={"topStart": "search", "topEnd": "info", "bottomStart": "pageLength", "bottomEnd": "paging"},
        columnControl=["order", "searchDropdown"], ordering={"indicators": False, "handler": False},
        classes="display compact cell-border", display_logo_when_loading=False)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds") if path.exists() else ""
