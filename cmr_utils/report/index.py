"""The run's ``index.html``, the page people share: the headline result first, then the tables.

Headline (the configuration chosen on val or by k-fold, its test numbers beside the paper's configuration),
the best configuration per text kind, the paper's Tables 1 and 2, every result in one
interactive table (itables, its JavaScript inlined so the page works offline), and provenance.
Pages are rendered from ``cmr_utils/report/templates``.
"""
from __future__ import annotations

import html
import json
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import itables
import pandas as pd
from itables.javascript import generate_init_offline_itables_html

from cmr_utils.paths import ROOT
from cmr_utils.evaluate import results as R
from cmr_utils.report import tables as T
from cmr_utils.io import save_csv, save_text
from cmr_utils.run_dir import as_run

PACKAGES = ("torch", "torchvision", "transformers", "dask", "scikit-learn", "numpy", "pandas", "papermill",
            "itables", "jinja2")
SHORT = {"n_components": "dims used"}  # results headers that would not wrap to a narrow column
CONFIG_LABELS = {"point": "grid point", "text_kind": "text kind", "features": "features",
                 "image_encoder": "image encoder", "text_encoder": "text encoder", "model": "model",
                 "shrinkage": "shrinkage", "latent_dim": "latent dim", "score": "score"}


COMPLETE, PREVIOUS = ".complete", "previous"  # a run folder's mark of a finished run, and where its report is kept


def keep_previous(run_dir: Path) -> None:
    """Before a run rewrites ``run_dir``: copy its report, if the last run there finished, to ``previous/``, so a
    run that fails later leaves it readable (``settle`` drops the copy once the new run finishes)."""
    from cmr_utils.report.share import linked
    mark = run_dir / COMPLETE
    if not mark.exists():
        return
    keep = run_dir / PREVIOUS
    shutil.rmtree(keep, ignore_errors=True)
    finished = time.strftime("%Y-%m-%d %H:%M", time.localtime(mark.stat().st_mtime))
    for f in linked(run_dir.resolve()):
        dest = keep / f.relative_to(run_dir.resolve())
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    page = keep / "index.html"
    page.write_text(page.read_text().replace("<body>", f"<body>\n<p class='banner'>The previous complete report, "
                                             f"from {finished}, kept while a later run on this folder failed: "
                                             "<a href='../index.html'>that run</a>.</p>", 1))
    mark.unlink()


def settle(run_dir: Path, ok: bool) -> None:
    """After a run: a finished one is marked complete and needs no kept copy; a failed one keeps it."""
    if ok:
        shutil.rmtree(run_dir / PREVIOUS, ignore_errors=True)
        (run_dir / COMPLETE).touch()


def write_index(run_dir: Path, steps: list[dict], params: dict, ran_on: dict | None = None) -> Path:
    """Write ``run_dir/index.html`` from the step log, the parameters and ``results.csv`` if present.

    ``ran_on`` is the runner's Dask cluster (``cluster.describe``), shown with its dashboard link.
    """
    run_dir = Path(run_dir)
    results = R.load(run_dir) if (run_dir / "results.csv").exists() and steps else None
    return _write(run_dir, f"cmr run: {run_dir.name}", results, steps=steps, params=params,
                  space=(run_dir / "space.html").exists(), provenance=_provenance(run_dir), ran_on=ran_on or {},
                  skipped=(run_dir / "skipped.csv").exists(), previous=(run_dir / PREVIOUS / "index.html").exists())


POINT_SPLITS, POINT_METRICS = ("val", "test"), ("medr", "r10")  # a grid point's numbers in the index


def write_grid_index(run_dir: Path, points: list[dict], params: dict[str, dict], ran_on: dict | None = None) -> Path:
    """Index of a grid run: the best point's choice as headline, a status row per point, and all
    points' results combined (also written to ``run_dir/results.csv``)."""
    run_dir = Path(run_dir)
    frames = [R.load(run_dir / p["point"]).assign(point=p["point"]) for p in points
              if (run_dir / p["point"] / "results.csv").exists()]
    results = pd.concat(frames, ignore_index=True) if frames else None
    if results is not None:
        save_csv(run_dir / "results.csv", results)
    head = best_point(run_dir, results) if results is not None else points[0]["point"]
    rows = [_point_row(p, results) for p in points]
    shown = {**params.get(head, {}), **({"cluster": ran_on["asked"]} if ran_on else {})}
    return _write(run_dir, f"cmr grid: {run_dir.name}", results, points=rows, head=head, params=shown,
                  point_splits=POINT_SPLITS, point_directions=T.DIRECTIONS,
                  point_metrics={m: T.METRICS[m] for m in POINT_METRICS},
                  provenance=_provenance(run_dir / head), ran_on=ran_on or {})


def best_point(grid_dir: Path, results: pd.DataFrame) -> str:
    """The grid point whose chosen configuration is best: by its k-fold means where every point with results chose
    by k-fold (``select`` in its params.yaml; the points' folds are the same recipes), else on val. Test never
    takes part. The grid's index heads with it, and the runs page shows it."""
    done = list(dict.fromkeys(results.point))
    if not all((grid_dir / p / "kfold.csv").exists() and (grid_dir / p / "params.yaml").exists()
               and as_run(grid_dir / p).params.get("select") == "kfold" for p in done):
        return T.chosen_config(results).point
    means = []
    for p in done:
        chosen = results[(results.point == p) & results.chosen].iloc[0]
        cv = R.cv_means(pd.read_csv(grid_dir / p / "kfold.csv"))
        means.append(cv[(cv[R.CV_KEYS] == chosen[R.CV_KEYS]).all(axis=1)].assign(point=p))
    return R.ranked(pd.concat(means, ignore_index=True)).iloc[0].point


def _write(run_dir: Path, title: str, results: pd.DataFrame | None, **context) -> Path:
    if results is not None:
        context.update(_sections(results, context.get("head")))
    chosen_by = "by k-fold cross-validation on train+val" if context["params"].get("select") == "kfold" else "on val"
    page = T.render("index.html.j2", title=title, results_rows=None if results is None else len(results),
                    chosen_by=chosen_by,
                    itables_init=generate_init_offline_itables_html(itables.options.dt_bundle),
                    **{"steps": None, "points": None, "space": False, "ran_on": {}, "skipped": False, "previous": False,
                       **context})
    save_text(run_dir / "index.html", page)
    return run_dir / "index.html"


def _sections(results: pd.DataFrame, head: str | None = None) -> dict:
    """Summary, best per text kind, paper tables and the interactive results table of ``results``; in a grid,
    the summary is the ``head`` point's choice."""
    chosen = T.chosen_config(results if head is None else results[results.point == head])
    paper = T.paper_config(results, chosen)
    same = paper is not None and paper.equals(chosen)
    head = [("chosen = paper" if same else "chosen", chosen, "train")]
    if not T.rows_of(results, chosen, fit_on="train+val").empty:
        head.append(("chosen, refit on train+val", chosen, "train+val"))
    if paper is not None and not same:
        head.append(("paper", paper, "train"))
    summary = pd.DataFrame([{"which": label, "config": _describe(c), **T.cells(T.rows_of(results, c, fit_on=f))}
                            for label, c, f in head])
    best = R.best_per_kind(results).reset_index()
    lead = {k: CONFIG_LABELS[k] for k in ("text_kind", "features", "point", "model", "shrinkage", "latent_dim",
                                          "score") if k in best} | {"val_medr": "val medR"}
    kinds = pd.DataFrame([{**{k: _value(r, k) for k in lead if k != "val_medr"}, "val_medr": f"{r.medr:g}",
                           "chosen": bool((r[chosen.index] == chosen).all()),
                           **T.cells(T.rows_of(results, r[T.keys(results)]))} for _, r in best.iterrows()])
    return {
        "chosen": [(CONFIG_LABELS[k], _value(chosen, k)) for k in CONFIG_LABELS if k in chosen],
        "summary": T.html_table(summary, {"which": "", "config": "configuration"}, T.protocol_note(results)),
        "paper_missing": paper is None,
        "kinds": T.html_table(kinds, lead, "Each text kind's configuration with the best val medR (image → recipe); "
                              + T.protocol_note(results)),
        "paper_tables": T.paper_tables(results),
        "results_table": _interactive(results),
    }


def _interactive(results: pd.DataFrame) -> str:
    """Every row of results.csv as a DataTable (search, per-column filters and order, paging), offline;
    the columns a reader compares first, the rest after."""
    first = [c for c in ("point", "text_kind", "features", "model", "shrinkage", "latent_dim", "score", "split",
                         "protocol", "direction", "fit_on", "medr", "r1", "r5", "r10", "chosen") if c in results]
    df = results[first + [c for c in results if c not in first and not c.endswith("_bags")]]  # per-bag: for compare
    same = {c: df[c].iloc[0] for c in df if c not in ("chosen", "medr", "r1", "r5", "r10") and df[c].nunique() == 1}
    note = ("<p class='muted'>The same in every row: " + ", ".join(f"{c.replace('_', ' ')} <code>{html.escape(str(v))}"
            "</code>" for c, v in same.items()) + ".</p>") if same else ""
    df = df.drop(columns=list(same)).rename(columns=lambda c: SHORT.get(c, c.replace("_", " ")))  # a laptop's width
    # the columns after the first ones get no controls (the search box above still reads them): a column's
    # two controls make it at least ~52 px wide, and the demo's 22 columns then overflowed 1300 px
    rest = list(range(len([c for c in first if c not in same]), len(df.columns)))
    return note + itables.to_html_datatable(
        df.round(2), connected=False, table_id="results", showIndex=False, maxBytes=0,
        pageLength=25, lengthMenu=[10, 25, 100, {"label": "All", "value": -1}],
        layout={"topStart": "pageLength", "topEnd": "search", "bottomStart": "info", "bottomEnd": "paging"},
        columnControl=[{"target": 0, "content": []}, {"target": 1, "content": ["order", "searchDropdown"]}],
        columnDefs=[{"targets": rest, "columnControl": [{"target": 0, "content": []}, {"target": 1, "content": []}]}],
        ordering={"indicators": False, "handler": False},
        classes="display compact cell-border", display_logo_when_loading=False)


def _point_row(p: dict, results: pd.DataFrame | None) -> dict:
    """A grid point's status, time, chosen configuration, and that configuration's medR and R@10 on val and
    test in both directions: with one lever changed per point, the ablation table."""
    row = {"point": p["point"], "error": p["error"], "seconds": sum(s["seconds"] for s in p["steps"]),
           "chosen": "", "numbers": {}}
    mine = results[results.point == p["point"]] if results is not None else pd.DataFrame()
    if not mine.empty:
        c = T.chosen_config(mine)
        row.update(chosen=_describe(c, point=False),
                   numbers={(split, d, m): text for split in POINT_SPLITS
                            for (d, m), text in T.cells(T.rows_of(mine, c, split)).items() if m in POINT_METRICS})
    return row


def _describe(c: pd.Series, point: bool = True) -> str:
    shrink = "" if c.model == "cca" else f" (shrinkage {c.shrinkage:g})"
    where = f" @ {c.point}" if point and "point" in c else ""
    return f"{c.text_kind} · {c.features} · {c.model}{shrink} · dim {c.latent_dim} · {c.score}{where}"


def _value(r: pd.Series, k: str) -> str:
    if k == "latent_dim" and "n_components" in r and r.n_components != r.latent_dim:
        return f"{r.latent_dim} ({r.n_components} used)"
    if k == "shrinkage" and r.model == "cca":
        return "none (plain CCA)"
    return f"{r[k]:g}" if isinstance(r[k], float) else str(r[k])


def _provenance(point_dir: Path) -> dict:
    manifest = point_dir / "features.json"
    data = json.loads(manifest.read_text()).get("data", {}) if manifest.exists() else {}
    return {"git commit": _git(), "python": platform.python_version(), **{p: _version(p) for p in PACKAGES},
            "data": data.get("root", ""), "data fingerprint": data.get("fingerprint", "")}


def _git() -> str:
    root = ROOT
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
