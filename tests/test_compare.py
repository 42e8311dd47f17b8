"""Many runs, one view: the runs page, ``compare`` and MLflow logging, on generated results and on real demo runs."""
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pytest
import yaml
from browser import in_browser
from helpers import SMALL, STEPS, fake_results
from scipy import stats

from cmr_utils import cli
from cmr_utils.report import compare
from cmr_utils.report import index as report
from cmr_utils.report import runs_page
from cmr_utils.report import tables
from cmr_utils.evaluate import results as R
from cmr_utils.runner import run as runner
from cmr_utils.io import save_csv


def fake_run(folder, results, steps=STEPS, code=None, finished="2026-01-01T10:00:00", params=None):
    """A run folder as the runner leaves it, around ``results``."""
    folder.mkdir(parents=True)
    save_csv(folder / "results.csv", results)
    (folder / "params.yaml").write_text(yaml.safe_dump(params or {"n_bags": 10}))
    (folder / "features.json").write_text(json.dumps({"data": {"fingerprint": "fp-" + folder.name}}))
    (folder / "run.json").write_text(json.dumps({"finished": finished, "commit": "abc1234", "steps": steps,
                                                 "code": code or runs_page.code_key()}))
    report.write_index(folder, steps, {})
    return folder


def headline(results):
    """The chosen configuration's test medR and R@10, both directions, as the run's own index reports them."""
    test = tables.rows_of(results, tables.chosen_config(results), "test").set_index("direction")
    return {(d, m): test.at[d, m] for d in tables.DIRECTIONS for m in ("medr", "r10")}


def test_runs_page_rows_status_and_numbers(tmp_path):
    reports = tmp_path / "reports"
    ok, stale = fake_results(kinds=("title",), seed=1), fake_results(kinds=("title",), seed=2)
    fake_run(reports / "ok", ok, finished="2026-01-03T10:00:00")
    fake_run(reports / "stale", stale, code="0" * 16, finished="2026-01-01T10:00:00")
    failed = STEPS[:1] + [{"notebook": "02_fit", "seconds": 1.0, "ok": False, "state": "FAILED"}]
    fake_run(reports / "broken", ok, steps=failed, finished="2026-01-02T10:00:00")  # an old results.csv: not shown
    grid = reports / "grid"
    for i, p in enumerate(("p1", "p2")):
        fake_run(grid / p, fake_results(kinds=("title",), seed=3 + i), finished=f"2026-01-0{4 + i}T10:00:00")
    points = [{"point": p, "steps": STEPS, "error": None} for p in ("p1", "p2")]
    report.write_grid_index(grid, points, {p: {} for p in ("p1", "p2")})
    (reports / "not-a-run").mkdir()
    fake_run(reports / "damaged", ok, finished="2025-12-31T10:00:00")
    (reports / "damaged" / "results.csv").write_text("text_kind\nx\n")

    rows = runs_page.runs(reports)
    assert [r["name"] for r in rows if r["name"] != "damaged"] == ["grid", "ok", "broken", "stale"]  # newest first
    status = {r["name"]: r["status"] for r in rows}
    assert status.pop("damaged").startswith("unreadable: ")
    assert status == {"grid": "complete", "ok": "complete", "broken": "failed at 02_fit",
                      "stale": "complete, out of date with the code"}
    by = {r["name"]: r for r in rows}
    assert by["ok"]["numbers"] == headline(ok) and by["stale"]["numbers"] == headline(stale)
    assert by["broken"]["numbers"] == {} and by["broken"]["chosen"] == ""
    combined = R.load(grid)
    best = tables.chosen_config(combined).point
    assert by["grid"]["numbers"] == headline(R.load(grid / best)) and by["grid"]["chosen"].endswith(f"@ {best}")
    assert [p["name"] for p in by["grid"]["points"]] == ["p1", "p2"] and by["grid"]["when"] == "2026-01-05 10:00"
    html = runs_page.write(reports).read_text()
    assert "href='grid/p2/index.html'" in html and "failed at 02_fit" in html
    assert "NaN" not in html and "nan" not in re.sub(r"<script.*?</script>", "", html, flags=re.S)  # broken: dashes
    assert not re.search(r"<script[^>]+src=['\"]?http", html)


def bags(values):
    return ";".join(f"{v:g}" for v in values)


def two_runs(tmp_path, shift, seed_b=0):
    """Run b = run a with every per-bag medR moved by ``shift`` (an array over the 10 bags)."""
    a = fake_results(kinds=("title",), features=("generated",), dims=(10, 50), seed=5)
    rng = np.random.default_rng(0)
    per_bag = [a.medr[i] + rng.normal(0, 1, 10) for i in range(len(a))]
    a = a.assign(medr_bags=[bags(v) for v in per_bag], medr=[v.mean() for v in per_bag],
                 medr_std=[v.std() for v in per_bag])
    b = a.assign(medr_bags=[bags(v + shift) for v in per_bag], medr=[(v + shift).mean() for v in per_bag],
                 medr_std=[(v + shift).std() for v in per_bag])
    fa = fake_run(tmp_path / "a", a, params={"n_bags": 10, "seed": 0})
    fb = fake_run(tmp_path / "b", b, params={"n_bags": 10, "seed": seed_b})
    for f in (fa, fb):  # the same data
        (f / "features.json").write_text(json.dumps({"data": {"fingerprint": "same"}}))
    return fa, fb, a, b


def test_paired_test_over_the_same_bags_and_welch_otherwise(tmp_path):
    shift = np.linspace(0.5, 1.5, 10)  # a small but consistent change on every bag
    fa, fb, a, b = two_runs(tmp_path, shift)
    c = compare.compare(fa, fb, "a", "b")
    assert c.params == [] and c.provenance == [] and not c.same
    row = c.rows[(c.rows.split == "test") & (c.rows.protocol == "1k")].iloc[0]
    assert row.medr_test == "paired" and row.medr_sig
    same = lambda df: df[(df[compare.ROW_KEYS + R.CONFIG_COLUMNS] == row[compare.ROW_KEYS + R.CONFIG_COLUMNS]).all(axis=1)]  # noqa: E731
    va, vb = (np.array(same(df).medr_bags.iloc[0].split(";"), float) for df in (a, b))
    assert row.medr_p == pytest.approx(stats.ttest_rel(vb, va).pvalue)
    assert (c.rows.r10_diff == 0).all() and (c.rows[c.rows.n_bags > 1].r10_p == 1).all()  # recalls unchanged
    assert (c.rows[c.rows.n_bags == 1].medr_test == "one ranking").all()

    fa, fb, *_ = two_runs(tmp_path / "other seed", shift, seed_b=1)  # other bags: unpaired
    c = compare.compare(fa, fb, "a", "b")
    assert c.params == [("seed", 0, 1)]
    row = c.rows[(c.rows.split == "test") & (c.rows.protocol == "1k")].iloc[0]
    n = 10
    sa, sb = (np.array(same(df).medr_bags.iloc[0].split(";"), float).std(ddof=1) for df in (a, b))
    assert row.medr_test == "Welch" and row.medr_p == pytest.approx(
        stats.ttest_ind_from_stats(row.medr_a, sa, n, row.medr_b, sb, n, equal_var=False).pvalue, rel=1e-3)


def test_tracking_uri_without_mlflow_stops_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    params = tmp_path / "p.yaml"
    params.write_text("n_bags: 2\n")
    assert cli.main(["run", str(params), "--set", f"tracking_uri={tmp_path / 'mlruns'}", "--name", "no-mlflow",
                     "--reports", str(tmp_path / "reports")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLflow" in err and "pip install -e '.[mlflow]'" in err
    assert not (tmp_path / "reports").exists() and not (tmp_path / "mlruns").exists()


# ---- real demo runs: one run, and a grid whose point 'same' repeats it and 'layer2' changes one parameter ----

@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    reports, mlruns = tmp / "reports", tmp / "mlruns"
    (tmp / "single.yaml").write_text(f"cache_dir: {tmp / 'cache'}\n")
    (tmp / "grid.yaml").write_text(f"cache_dir: {tmp / 'cache'}\ngrid:\n  same: {{}}\n  layer2: {{text_layer: -2}}\n")
    track = [f"tracking_uri={mlruns}"]
    runner.run(tmp / "single.yaml", SMALL + track, name="single", reports_dir=reports)
    runner.run(tmp / "grid.yaml", SMALL + track, name="grid", reports_dir=reports, jobs=2)
    return reports, mlruns


@pytest.mark.slow
def test_compare_names_the_parameter_and_prints_the_differences(demo_runs, capsys):
    reports, _ = demo_runs
    assert cli.main(["compare", "single", "grid/layer2", "--rows", "0", "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    c = compare.compare(reports / "single", reports / "grid" / "layer2", "single", "grid/layer2")
    assert [k for k, _, _ in c.params] == ["text_layer"] and c.provenance == []
    assert re.findall(r"^    (\w+): ", out, re.M) == ["text_layer"] and "text_layer: None -> -2" in out
    # the differences printed, against the two results.csv merged by hand
    a, b = R.load(reports / "single"), R.load(reports / "grid" / "layer2")
    keys = R.CONFIG_COLUMNS + ["fit_on", "split", "protocol", "direction"]
    both = a.merge(b, on=keys, suffixes=("_a", "_b"))
    test = both[(both.split == "test") & (both.fit_on == "train")]
    changed = test[(test.medr_a != test.medr_b) | (test.r10_a != test.r10_b)]
    assert len(changed) and f"{len(test)} rows in common, {len(changed)} with different numbers" in out
    lines = out.splitlines()
    for _, r in changed.iterrows():
        line = next(x for x in lines if x.strip().startswith(report._describe(r)) and r.direction in x)
        for m in ("medr", "r10"):
            assert f"{r[f'{m}_a']:g} → {r[f'{m}_b']:g} ({r[f'{m}_b'] - r[f'{m}_a']:+.4g})" in line
    page = reports / "compare-single-grid_layer2.html"
    assert f"[cmr] page: {page}" in out
    html = page.read_text()
    assert "<th>text_layer</th><td>null</td><td>-2</td>" in html and "paired t-test" in html


@pytest.mark.slow
def test_compare_two_identical_runs_says_so(demo_runs, capsys):
    reports, _ = demo_runs
    assert cli.main(["compare", "single", "grid/same", "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "no difference" in out and "parameters that differ" not in out
    c = compare.compare(reports / "single", reports / "grid" / "same")
    assert c.same and len(c.rows) == len(R.load(reports / "single"))
    assert "No difference" in (reports / "compare-single-grid_same.html").read_text()


RUNS_PROBE = """
  for (let i = 0; i < 100 && !document.querySelector('#runs_wrapper .dt-search input'); i++)
    await new Promise(r => setTimeout(r, 100));
  const rows = () => [...document.querySelectorAll('#runs > tbody > tr')];
  const head = [...document.querySelectorAll('#runs_wrapper thead th')].map(h => h.innerText.trim());
  const table = rows().map(r => Object.fromEntries([...r.children].map((c, i) => [head[i], c.innerText.trim()])));
  const links = [...document.querySelectorAll('#runs a')].map(a => a.href);
  const input = document.querySelector('#runs_wrapper .dt-search input');
  input.value = 'layer2'; input.dispatchEvent(new Event('input', {bubbles: true}));
  await new Promise(r => setTimeout(r, 500));
  const filtered = rows().map(r => r.children[0].innerText.trim());
  input.value = 'no such run'; input.dispatchEvent(new Event('input', {bubbles: true}));
  await new Promise(r => setTimeout(r, 500));
  return {head, table, links, filtered, none: document.querySelector('#runs_wrapper .dt-info').innerText};"""


@pytest.mark.slow
def test_runs_page_lists_the_run_and_the_grid_and_its_links_open(demo_runs, tmp_path):
    reports, _ = demo_runs
    got = in_browser(reports / "index.html", tmp_path, RUNS_PROBE)
    table = {r["run"]: r for r in got["table"]}
    assert list(table) == ["grid", "single"]  # newest first
    best = tables.chosen_config(R.load(reports / "grid")).point
    for name, results in (("single", R.load(reports / "single")), ("grid", R.load(reports / "grid" / best))):
        row = table[name]
        assert row["status"] == "complete" and row["commit"] and row["data fingerprint"]
        for (d, m), value in headline(results).items():
            assert float(row[f"{tables.METRICS[m]} {tables.DIRECTIONS[d]}"]) == pytest.approx(value, abs=0.005)
    assert "2 points" in table["grid"]["points"]
    assert got["filtered"] == ["grid"] and got["none"].startswith("Showing 0 to 0 of 0 entries")
    expected = {reports / "single" / "index.html", reports / "grid" / "index.html",
                reports / "grid" / "same" / "index.html", reports / "grid" / "layer2" / "index.html"}
    assert {Path(unquote(urlsplit(u).path)) for u in got["links"]} == expected
    for page in sorted(expected):  # each link opens: the page loads in the browser, with its run's name
        assert in_browser(page, tmp_path, "return document.title;").endswith(page.parent.name)


@pytest.mark.slow
def test_mlflow_file_store_holds_params_metrics_and_artifacts(demo_runs):
    from mlflow import MlflowClient
    reports, mlruns = demo_runs
    client = MlflowClient(mlruns.as_uri())
    exp = client.get_experiment_by_name("cmr")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"single", "grid", "same", "layer2"}
    single = runs["single"]
    assert single.info.status == "FINISHED"
    given = yaml.safe_load((reports / "single" / "params.yaml").read_text())
    assert single.data.params["n_bags"] == "3" and single.data.params["text_kinds"] == str(given["text_kinds"])
    assert "run_dir" not in single.data.params and single.data.params["text_layer"] == "None"
    results = R.load(reports / "single")
    for (d, m), value in headline(results).items():
        assert single.data.metrics[f"test.{d}.{m}"] == pytest.approx(value)
    chosen = tables.chosen_config(results)
    assert single.data.tags["chosen.latent_dim"] == str(chosen.latent_dim)
    fingerprint = json.loads((reports / "single" / "features.json").read_text())["data"]["fingerprint"]
    assert single.data.tags["data_fingerprint"] == fingerprint and single.data.tags["commit"]
    artifacts = {f.path for f in client.list_artifacts(single.info.run_id)}
    assert {"index.html", "results.csv", "01_extract.html", "04_visualize.html"} <= artifacts
    local = client.download_artifacts(single.info.run_id, "results.csv")
    pd.testing.assert_frame_equal(pd.read_csv(local, dtype={"protocol": str}), results)
    parent = runs["grid"].info.run_id
    for p in ("same", "layer2"):
        assert runs[p].data.tags["mlflow.parentRunId"] == parent
    assert runs["layer2"].data.params["text_layer"] == "-2"
    assert "mlflow.parentRunId" not in runs["grid"].data.tags
