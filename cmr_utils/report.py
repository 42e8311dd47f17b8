"""The run's ``index.html``: links to every notebook report, the results table, and provenance."""
from __future__ import annotations

import html
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

PACKAGES = ("torch", "torchvision", "transformers", "cca-zoo", "scikit-learn", "numpy", "papermill")

_SORT_JS = """<script>
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], asc = th.dataset.asc !== 'true';
  const rows = Array.from(body.rows), key = r => r.cells[col].innerText;
  rows.sort((a, b) => { const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y); return asc ? c : -c; });
  rows.forEach(r => body.appendChild(r)); th.dataset.asc = asc; }));
</script>"""


def write_index(run_dir: Path, steps: list[dict], params: dict) -> Path:
    """Write ``run_dir/index.html`` from the step log, the parameters and ``results.csv`` if present."""
    run_dir = Path(run_dir)
    links = "".join(
        f"<li><a href='{s['notebook']}.html'>{s['notebook']}</a> "
        f"({s['state'] if s['ok'] else '<b>failed</b>'}, {s['seconds']:.1f} s) · "
        f"<a href='{s['notebook']}.ipynb'>notebook</a></li>" for s in steps)
    sections = [("Reports", f"<ul>{links}</ul>"), ("Results", _results_table(run_dir / "results.csv")),
                ("Provenance", _table(_provenance(run_dir))), ("Parameters", _params_table(params))]
    return _page(run_dir, f"cmr run: {run_dir.name}", sections)


def write_grid_index(run_dir: Path, points: list[dict], params: dict[str, dict]) -> Path:
    """Index of a grid run: one row per point with its status and time, and all points' results in one table."""
    run_dir = Path(run_dir)
    rows, frames = [], []
    for p in points:
        link = f"<a href='{p['point']}/index.html'>{html.escape(p['point'])}</a>"
        status = "ok" if p["error"] is None else f"<b>failed</b>: {html.escape(p['error'])}"
        rows.append(f"<tr><td>{link}</td><td>{status}</td><td>{sum(s['seconds'] for s in p['steps']):.1f}</td></tr>")
        results = run_dir / p["point"] / "results.csv"
        if results.exists():
            frames.append(pd.read_csv(results, dtype={"protocol": str}).assign(point=p["point"]))
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(run_dir / "results.csv", index=False)
    points_table = f"<table><tr><th>point</th><th>status</th><th>seconds</th></tr>{''.join(rows)}</table>"
    first = next(iter(params.values()), {})
    sections = [("Grid points", points_table), ("Results of all points", _results_table(run_dir / "results.csv")),
                ("Provenance (data of the first point)", _table(_provenance(run_dir / points[0]["point"]))),
                ("Parameters of the first point", _params_table(first))]
    return _page(run_dir, f"cmr grid: {run_dir.name}", sections)


def _results_table(path: Path) -> str:
    if not path.exists():
        return "<p>No results.csv: the evaluation notebook did not finish.</p>"
    df = pd.read_csv(path, dtype={"protocol": str})
    return (f"<p><a href='results.csv'>results.csv</a>: {len(df)} rows; click a column to sort.</p>"
            + df.to_html(index=False, float_format=lambda v: f"{v:.2f}", classes="sortable", border=0))


def _provenance(point_dir: Path) -> dict:
    manifest = point_dir / "features.json"
    data = json.loads(manifest.read_text()).get("data", {}) if manifest.exists() else {}
    return {"git commit": _git(), "python": platform.python_version(), **{p: _version(p) for p in PACKAGES},
            "data": data.get("root", ""), "data fingerprint": data.get("fingerprint", "")}


def _table(d: dict) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in d.items()) + "</table>"


def _params_table(params: dict) -> str:
    return _table({k: json.dumps(v) for k, v in sorted(params.items())})


def _page(run_dir: Path, title: str, sections: list[tuple[str, str]]) -> Path:
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:90em}} table{{border-collapse:collapse;font-size:90%}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}} table.sortable th{{cursor:pointer;background:#f3f3f3}}</style>
</head><body><h1>{html.escape(title)}</h1>{body}{_SORT_JS}</body></html>"""
    (run_dir / "index.html").write_text(page)
    return run_dir / "index.html"


def _git() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (dirty)" if dirty else "")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
