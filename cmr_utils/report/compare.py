"""Compare runs: the parameters, code and data that differ, and whether their numbers do.

    python -m cmr_utils compare RUN_A RUN_B [RUN_C ...] [--rows N] [--reports DIR]

A RUN is a run folder's name under reports/ (``RUN/point`` for a grid point) or its path. Every
other run is compared with the first: the parameters that differ (and the code commits and data
fingerprints, if they do); every configuration both evaluated (same configuration, split, protocol,
direction and fitting pairs), side by side, with each metric's difference and whether it exceeds
the spread over bags; and what only one of them has. The terminal gets the differences on test;
``reports/compare-<a>-<b>.html`` gets them all, for sharing.

Significance, per row and metric, at ``ALPHA``: where both runs ranked the same seeded bags (same
data, seed, query-set size, bag size and number of bags) and kept each bag's value, a paired
t-test over the bags; otherwise Welch's t-test from the two means and stds over bags. It says
whether the difference is larger than bag-to-bag variation: the bags are drawn from one test set,
so it is not a test of a new test set, and among many rows about one in twenty differs "significantly"
by chance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import itables
import numpy as np
import pandas as pd
import yaml
from itables.javascript import generate_init_offline_itables_html
from scipy import stats

from cmr_utils.report import index as report
from cmr_utils.evaluate import results as R
from cmr_utils.report import runs_page
from cmr_utils.report import tables as T
from cmr_utils.io import save_text
from cmr_utils.runner.notebooks import declared

from cmr_utils.paths import REPORTS
ROW_KEYS = ["fit_on", "split", "protocol", "direction"]
METRICS = ("medr", "r1", "r5", "r10")
ALPHA = 0.05
WHERE_NOT_WHAT = {"run_dir", "cache_dir"}  # parameters that say where files go, not what is computed
RULE = ("Significant: p < 0.05, by a paired t-test over the bags where both runs ranked the same seeded bags "
        "(same data, seed, query-set size, bag size and number of bags) and kept each bag's value, else by Welch's "
        "t-test from the means and stds over bags; a whole-split ranking (one bag) has no spread to test. It says "
        "whether a difference is larger than bag-to-bag variation on this test set, not on another; among many "
        "rows, about one in twenty is 'significant' by chance.")


@dataclass
class Comparison:
    """Run ``b`` against run ``a``: ``rows`` has both runs' metrics, each difference (b − a), p-value and verdict."""
    a: str
    b: str
    params: list[tuple[str, object, object]]
    provenance: list[tuple[str, str, str]]
    rows: pd.DataFrame
    only: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def same(self) -> bool:
        """Nothing differs: parameters, commit, data, which rows exist, and every metric of every common row."""
        return (not self.params and not self.provenance and not any(len(v) for v in self.only.values())
                and not (self.rows[[f"{m}_diff" for m in METRICS]] != 0).any(axis=None))


def resolve(run: str, reports_dir: Path = REPORTS) -> tuple[Path, str]:
    """(folder, label) of a run name under ``reports_dir`` (``RUN/point`` for a grid point) or a path."""
    path = Path(run) if Path(run).is_dir() else Path(reports_dir) / run
    if not (path / "results.csv").is_file():
        raise FileNotFoundError(f"{path / 'results.csv'} not found: is {run} a finished run (or RUN/point)?")
    path = path.resolve()
    label = str(path.relative_to(Path(reports_dir).resolve())) if path.is_relative_to(Path(reports_dir).resolve()) \
        else path.name
    return path, label


def against_first(runs: list[str], reports_dir: Path = REPORTS) -> list[Comparison]:
    """Every run after the first compared with the first (names as ``resolve`` reads them)."""
    (a_dir, a), *rest = [resolve(r, reports_dir) for r in runs]
    return [compare(a_dir, b_dir, a, b) for b_dir, b in rest]


def compare(a_dir: Path, b_dir: Path, a: str = "a", b: str = "b") -> Comparison:
    """Run ``b_dir`` against run ``a_dir`` (labelled ``a`` and ``b``): rows are matched on configuration (and grid
    point), split, protocol, direction and fitting pairs."""
    ra, rb = R.load(a_dir), R.load(b_dir)
    if ("point" in ra) != ("point" in rb):
        raise ValueError("one is a grid and the other a single run: compare a grid point (RUN/point) instead")
    keys = T.keys(ra) + ROW_KEYS
    both = ra.merge(rb, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    pa, pb = params(a_dir), params(b_dir)
    sa, sb = runs_page.summary(a_dir), runs_page.summary(b_dir)
    pairable = pa.get("seed") == pb.get("seed") and sa["data"] == sb["data"]
    rows = both[both._merge == "both"].drop(columns="_merge")
    out = rows[keys].assign(bag_size=rows.bag_size_a, n_bags=rows.n_bags_a)
    for m in METRICS:
        out[f"{m}_a"], out[f"{m}_b"] = rows[f"{m}_a"], rows[f"{m}_b"]
        out[f"{m}_diff"] = rows[f"{m}_b"] - rows[f"{m}_a"]
        tested = [significance(r, m, pairable) for _, r in rows.iterrows()]
        out[f"{m}_p"] = [p for p, _ in tested]
        out[f"{m}_test"] = [t for _, t in tested]
        out[f"{m}_sig"] = out[f"{m}_p"] < ALPHA
    differ = [(k, pa.get(k), pb.get(k)) for k in sorted((set(pa) | set(pb)) - WHERE_NOT_WHAT) if pa.get(k) != pb.get(k)]
    prov = [(what, sa[k], sb[k]) for what, k in (("commit", "commit"), ("data fingerprint", "data")) if sa[k] != sb[k]]
    only = {label: both[both._merge == side][keys] for label, side in ((a, "left_only"), (b, "right_only"))}
    return Comparison(a, b, differ, prov, out.reset_index(drop=True), only)


def significance(row: pd.Series, m: str, pairable: bool) -> tuple[float, str]:
    """(p-value, the test used) of the difference in metric ``m`` between the two runs' rows merged in ``row``."""
    n_a, n_b = int(row.n_bags_a), int(row.n_bags_b)
    if n_a <= 1 or n_b <= 1:
        return np.nan, "one ranking"
    bags = [row.get(f"{m}_bags_{s}") for s in "ab"]
    if pairable and all(isinstance(x, str) for x in bags) and row.n_pairs_a == row.n_pairs_b \
            and row.bag_size_a == row.bag_size_b and n_a == n_b:
        d = np.subtract(*[np.array(x.split(";"), float) for x in bags[::-1]])
        if not d.any():
            return 1.0, "paired"
        return (0.0 if np.ptp(d) == 0 else float(stats.ttest_1samp(d, 0).pvalue)), "paired"
    mean, sd = [row[f"{m}_{s}"] for s in "ab"], [row[f"{m}_std_{s}"] * np.sqrt(n / (n - 1)) for s, n in (("a", n_a), ("b", n_b))]
    if mean[0] == mean[1]:
        return 1.0, "Welch"
    if sd[0] == sd[1] == 0:
        return 0.0, "Welch"
    return float(stats.ttest_ind_from_stats(mean[0], sd[0], n_a, mean[1], sd[1], n_b, equal_var=False).pvalue), "Welch"


def params(run_dir: Path) -> dict:
    """A run's parameters: the notebooks' defaults, then ``params.yaml``'s (a value left out and the same value given
    are one); a grid's are its points' where they agree, else 'differs by point'."""
    defaults = {k: v for nb in declared().values() for k, v in nb.items()}
    if (run_dir / "params.yaml").exists():
        return {**defaults, **(yaml.safe_load((run_dir / "params.yaml").read_text()) or {})}
    points = [params(p.parent) for p in sorted(run_dir.glob("*/params.yaml"))]
    keys = set().union(*points) if points else set()
    return {k: (vals[0] if all(v == vals[0] for v in vals) else "differs by point")
            for k in keys for vals in [[p.get(k) for p in points]]}


def text(c: Comparison, max_rows: int = 20) -> str:
    """The terminal's account: what differs, the chosen configurations, and the test rows whose numbers differ."""
    lines = [f"{c.b} against {c.a}"]
    if c.same:
        return "\n".join(lines + ["  no difference: the same parameters, commit and data, and every metric of all "
                                  f"{len(c.rows)} rows the two runs evaluated is equal."])
    lines += ["  parameters that differ:" if c.params else "  parameters: the same"]
    lines += [f"    {k}: {va!r} -> {vb!r}" for k, va, vb in c.params]
    lines += [f"  {what}: {va or '?'} -> {vb or '?'}" for what, va, vb in c.provenance]
    for label, df in c.only.items():
        if len(df):
            configs = df.drop(columns=ROW_KEYS).drop_duplicates()
            lines.append(f"  only in {label}: {len(df)} rows, {len(configs)} configurations")
    test = main_test_rows(c.rows)
    if test.empty:
        return "\n".join(lines + ["  no test rows in common"])
    changed = test[(test[[f"{m}_diff" for m in METRICS]] != 0).any(axis=1)]
    head = f"  test, protocol {test.protocol.iloc[0]}: {len(test)} rows in common, {len(changed)} with different numbers"
    if changed.empty:
        return "\n".join(lines + [head])
    tests = " and ".join(sorted(set(changed.medr_test) | set(changed.r10_test)))
    lines.append(f"{head}; significant ✱ ({tests} tests): medR {int(test.medr_sig.sum())}, R@10 {int(test.r10_sig.sum())}")
    order = changed.assign(_k=-changed.medr_diff.abs()).sort_values(["medr_sig", "_k"], ascending=[False, True])
    shown = order if max_rows <= 0 else order.head(max_rows)
    if len(shown):
        lines.append("  " + _line("configuration", "direction", *(f"{T.METRICS[m]} a → b (Δ)" for m in ("medr", "r10"))))
        for _, r in shown.iterrows():
            lines.append("  " + _line(report._describe(r), r.direction, *(
                f"{r[f'{m}_a']:g} → {r[f'{m}_b']:g} ({r[f'{m}_diff']:+.4g}){' ✱' if r[f'{m}_sig'] else ''}"
                for m in ("medr", "r10"))))
        if len(shown) < len(order):
            lines.append(f"  … {len(order) - len(shown)} more rows on the page (--rows 0 prints all)")
    return "\n".join(lines)


def main_test_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows on test at its main protocol (the smallest bag), fitted on train: as in each run's headline."""
    test = rows[(rows.split == "test") & (rows.fit_on == "train")]
    return test if test.empty else test[test.protocol == test.loc[test.bag_size.idxmin(), "protocol"]]


def _line(*cells) -> str:
    widths = (64, 10, 30, 30)
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()


def write_page(comparisons: list[Comparison], reports_dir: Path) -> Path:
    """``reports_dir/compare-<a>-<b>.html``: every comparison in full, with interactive tables, offline."""
    labels = [comparisons[0].a] + [c.b for c in comparisons]
    page = Path(reports_dir) / ("compare-" + "-".join(label.replace("/", "_") for label in labels) + ".html")
    sections = [{"c": c, "rows": _datatable(_shown(c.rows), f"rows{i}"),
                 "only": {k: _datatable(v, f"only{i}_{j}") for j, (k, v) in enumerate(c.only.items()) if len(v)}}
                for i, c in enumerate(comparisons)]
    save_text(page, T.render("compare.html.j2", title=f"cmr: {' vs '.join(labels)}", labels=labels,
                             sections=sections, rule=RULE,
                             itables_init=generate_init_offline_itables_html(itables.options.dt_bundle)))
    return page


def _shown(rows: pd.DataFrame) -> pd.DataFrame:
    """The page's table: keys, then per metric a, b, Δ, p and ✱, significant and test rows first."""
    lead = ["split", "protocol", "direction", "fit_on"]
    rest = [c for c in rows if c not in lead and not c.endswith(("_a", "_b", "_diff", "_p", "_test", "_sig"))]
    out = pd.DataFrame({"configuration": [report._describe(r) for _, r in rows.iterrows()]}, index=rows.index)
    out[lead] = rows[lead]
    for m in METRICS:
        name = T.METRICS[m]
        out[f"{name} a"], out[f"{name} b"], out[f"{name} Δ"] = rows[f"{m}_a"], rows[f"{m}_b"], rows[f"{m}_diff"].round(4)
        out[f"{name} p"] = rows[f"{m}_p"].round(4)
        out[f"{name} ✱"] = np.where(rows[f"{m}_sig"], "✱", "")
    out["test"] = rows.medr_test
    out[rest] = rows[rest]
    return out.iloc[np.lexsort([rows.split != "test", ~rows.medr_sig])]


def _datatable(df: pd.DataFrame, table_id: str) -> str:
    return itables.to_html_datatable(
        df, connected=False, table_id=table_id, showIndex=False, maxBytes=0, scrollX=True, pageLength=25,
        lengthMenu=[10, 25, 100, {"label": "All", "value": -1}], order=[],
        layout={"topStart": "pageLength", "topEnd": "search", "bottomStart": "info", "bottomEnd": "paging"},
        columnControl=["order", "searchDropdown"], ordering={"indicators": False, "handler": False},
        classes="display compact nowrap cell-border", display_logo_when_loading=False)
