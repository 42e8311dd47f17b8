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
        f"({'ok' if s['ok'] else '<b>failed</b>'}, {s['seconds']:.1f} s) · "
        f"<a href='{s['notebook']}.ipynb'>notebook</a></li>" for s in steps)
    results = run_dir / "results.csv"
    if results.exists():
        df = pd.read_csv(results)
        table = (f"<p><a href='results.csv'>results.csv</a>: {len(df)} rows; click a column to sort.</p>"
                 + df.to_html(index=False, float_format=lambda v: f"{v:.2f}", classes="sortable", border=0))
    else:
        table = "<p>No results.csv: the evaluation notebook did not finish.</p>"
    manifest = run_dir / "features.json"
    data = json.loads(manifest.read_text()).get("data", {}) if manifest.exists() else {}
    prov = {"git commit": _git(), "python": platform.python_version(),
            **{p: _version(p) for p in PACKAGES}, "data": data.get("root", ""),
            "data fingerprint": data.get("fingerprint", "")}
    prov_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in prov.items())
    par_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td></tr>"
                       for k, v in sorted(params.items()))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>cmr run: {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:90em}} table{{border-collapse:collapse;font-size:90%}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}} table.sortable th{{cursor:pointer;background:#f3f3f3}}</style>
</head><body><h1>cmr run: {html.escape(run_dir.name)}</h1>
<h2>Reports</h2><ul>{links}</ul>
<h2>Results</h2>{table}
<h2>Provenance</h2><table>{prov_rows}</table>
<h2>Parameters</h2><table>{par_rows}</table>
{_SORT_JS}</body></html>"""
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
