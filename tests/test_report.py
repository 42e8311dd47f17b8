"""The shared index page and the paper's tables: content checked against results.csv, and in headless Chromium."""
import json
import re

import numpy as np
import pandas as pd
from browser import in_browser
from helpers import KINDS, STEPS, best_on_val, fake_results

from cmr_utils.report import index as report
from cmr_utils.report import tables
from cmr_utils.evaluate import results as R
from cmr_utils.io import save_csv, save_text
from cmr_utils.report import runs_page

def cell_text(table_html):
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", table_html, re.S)]


# ---- tables.py on synthetic frames ----

def test_cell_is_mean_plus_minus_std_and_one_bag_has_no_spread():
    assert tables.cell(12.345, 1.26) == "12.3 ± 1.3"
    assert tables.cell(4.0, 0.0, n_bags=1) == "4.0"


def test_the_chosen_configuration_is_the_best_image_to_recipe_on_val_and_test_never_counts():
    df = fake_results().drop(columns="chosen")
    best = best_on_val(df)
    assert (best.model, best.score, best.latent_dim) == ("ridge", "cosine", 100)  # as fake_results is made
    assert R.chosen(df).to_dict() == best[R.CONFIG_COLUMNS].to_dict()
    cca = (df.model == "cca") & (df.latent_dim == 10)
    df.loc[cca & (df.split == "test"), ["medr", "r10"]] = (0.1, 100.0)  # the best by far, on test only
    df.loc[cca & (df.direction == "recipe2im"), ["medr", "r10"]] = (0.1, 100.0)  # and recipe→image
    assert R.chosen(df).to_dict() == best[R.CONFIG_COLUMNS].to_dict()
    df.loc[cca & (df.split == "val") & (df.direction == "im2recipe"), ["medr", "r10"]] = (0.1, 100.0)
    assert R.chosen(df).model == "cca" and R.chosen(df).latent_dim == 10


def test_paper_tables_are_10k_then_1k_with_the_paper_rows():
    df = fake_results()
    out = tables.paper_tables(df)
    assert [t.split(" · ")[1] for t, _ in out] == ["test, 10k", "test, 1k"]
    assert out[0][0].startswith("Table 1") and out[1][0].startswith("Table 2")
    rows = tables.paper_rows(df, "1k")
    chosen = tables.chosen_config(df)
    assert set(rows.block) == {"Paper: plain CCA, correlation score",
                               f"Chosen: ridge, shrinkage 0.5, {chosen.score} score"}
    # dims the paper reports plus the chosen one, never the others; every kind × features
    assert chosen.latent_dim == 100 and set(rows.latent_dim) == {50, 100, 768}
    assert len(rows) == len(rows.drop_duplicates(["block", "text_kind", "features", "latent_dim"]))
    assert len(rows[rows.block.str.startswith("Paper")]) == len(KINDS) * 2 * 3
    assert rows.chosen.sum() == 1
    cca = df[(df.split == "test") & (df.protocol == "1k") & (df.model == "cca") & (df.score == "correlation")
             & (df.text_kind == "all") & (df.features == "given") & (df.latent_dim == 768)].set_index("direction")
    got = rows[rows.block.str.startswith("Paper") & (rows.text_kind == "all") & (rows.features == "given")
               & (rows.latent_dim == 768)].iloc[0]
    assert got[("recipe2im", "r5")] == f"{cca.at['recipe2im', 'r5']:.1f} ± 0.5"
    assert got[("im2recipe", "medr")] == tables.cell(cca.at["im2recipe", "medr"], cca.at["im2recipe", "medr_std"])
    html = out[1][1]
    assert "…" not in html and "..." not in html
    assert all(re.fullmatch(r"[\w ]+|\d+|\d+\.\d ± \d+\.\d", c) for c in cell_text(html))
    assert all(f">{k}<" in html for k in KINDS)


def test_small_test_split_falls_back_to_its_main_protocol():
    df = fake_results(kinds=("title",), features=("generated",), test_pairs=800)  # smaller than a 1k bag
    assert tables.protocols(df) == ["full"]
    [(title, html)] = tables.paper_tables(df)
    assert "full" in title and "No 1k or 10k bags" in html and "all 800 pairs ranked once" in html
    assert "±" not in "".join(cell_text(html))  # one ranking: no spread to show


def test_only_1k_when_the_split_has_no_10k_bag():
    df = fake_results(kinds=("title",), test_pairs=5000)
    assert tables.protocols(df) == ["1k"]


def test_paper_block_absent_and_chosen_dim_kept():
    df = fake_results(kinds=("title",), dims=(10, 20, 768))
    df = df[df.model != "cca"]
    rows = tables.paper_rows(df, "1k")
    assert set(rows.block) == {f"Chosen: ridge, shrinkage 0.5, {tables.chosen_config(df).score} score"}
    assert tables.chosen_config(df).latent_dim == 20 and set(rows.latent_dim) == {20, 768}
    assert tables.paper_config(df, tables.chosen_config(df)) is None


# ---- the index ----

def write_run(tmp_path, results, space=False):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_csv(run_dir / "results.csv", results)
    (run_dir / "features.json").write_text(json.dumps({"data": {"root": "/data", "fingerprint": "abc123"}}))
    if space:
        (run_dir / "space.html").write_text("<html></html>")
    return report.write_index(run_dir, STEPS, {"n_bags": 10, "models": ["cca", "ridge"]})


SUMMARY_PROBE = """
  const rows = [...document.querySelectorAll('.headline table.cmr-metrics tbody tr')];
  const [keys, values] = [...document.querySelector('.headline table.kv').rows]
      .map(r => [...r.cells].map(c => c.innerText));
  const kv = Object.fromEntries(keys.map((k, i) => [k, values[i]]));
  return {kv, rows: rows.map(r => [...r.cells].map(c => c.innerText.trim())),
          paper: [...document.querySelectorAll('table.cmr-metrics')].slice(2)
             .map(t => [...t.querySelectorAll('td')].map(c => c.innerText.trim())),
          resources: performance.getEntriesByType('resource').map(e => e.name)};"""

FILTER_PROBE = """
  for (let i = 0; i < 100 && !document.querySelector('#results_wrapper .dt-search input'); i++)
    await new Promise(r => setTimeout(r, 100));
  const input = document.querySelector('#results_wrapper .dt-search input');
  const count = () => document.querySelector('#results_wrapper .dt-info').innerText;
  const before = count();
  input.value = KIND; input.dispatchEvent(new Event('input', {bubbles: true}));
  await new Promise(r => setTimeout(r, 500));
  const th = [...document.querySelectorAll('#results_wrapper thead th')].find(h => h.innerText.trim() === 'medr');
  const col = [...th.parentNode.children].indexOf(th);  // its order button: the same column, the controls' row
  document.querySelectorAll('#results_wrapper thead tr')[1].children[col].querySelector('.dtcc-button_order').click();
  await new Promise(r => setTimeout(r, 300));
  const rows = [...document.querySelectorAll('#results tbody tr')];
  return {before, after: count(), shown: rows.map(r => r.innerText),
          medr: rows.map(r => parseFloat(r.cells[col].innerText))};"""


def test_index_headline_tables_and_offline_interactive_table(tmp_path):
    results = fake_results(kinds=("title", "ingredients"), test_pairs=12000)
    page = write_run(tmp_path, results, space=True)
    html = page.read_text()
    assert not re.search(r"<script[^>]+src=['\"]?http", html) and not re.search(r"<link[^>]+href=['\"]?http", html)
    for nb in ("01_extract", "02_fit", "03_evaluate", "04_visualize"):
        assert f"href='{nb}.html'" in html
    assert "href='space.html'>Interactive shared space" in html
    assert "<th>data fingerprint</th><td>abc123</td>" in html

    got = in_browser(page, tmp_path, SUMMARY_PROBE)
    chosen = results[results.chosen].iloc[0]
    assert got["kv"]["text kind"] == chosen.text_kind and got["kv"]["score"] == chosen.score
    assert got["kv"]["model"] == chosen.model and got["kv"]["latent dim"] == str(chosen.latent_dim)
    test = R.main_rows(results[results.chosen], "test", "im2recipe").iloc[0]
    refit = R.main_rows(results[results.chosen], "test", "im2recipe", fit_on="train+val").iloc[0]
    assert [r[0] for r in got["rows"]] == ["chosen", "chosen, refit on train+val", "paper"]
    assert got["rows"][0][2] == f"{test.medr:.1f} ± {test.medr_std:.1f}"
    assert got["rows"][1][2] == f"{refit.medr:.1f} ± {refit.medr_std:.1f}"
    assert "cca · dim 50 · correlation" in got["rows"][2][1] and chosen.text_kind in got["rows"][2][1]
    assert not [u for u in got["resources"] if u.startswith("http")]
    cells = [c for t in got["paper"] for c in t]
    assert cells and not [c for c in cells if "…" in c] and {"title", "ingredients"} <= set(cells)

    kind = "ingredients"
    found = in_browser(page, tmp_path, FILTER_PROBE.replace("KIND", repr(kind)))
    total, after = (int(re.search(r"of ([\d,]+) entries", found[k]).group(1).replace(",", ""))
                    for k in ("before", "after"))
    assert total == len(results) and after == (results.text_kind == kind).sum()
    assert found["shown"] and all(kind in r for r in found["shown"])
    assert found["medr"] == sorted(found["medr"]) and found["medr"][0] == results[results.text_kind == kind].medr.min()


def test_index_results_table_fits_1300_pixels(tmp_path):
    """Every column of the interactive results table readable without scrolling sideways on a laptop."""
    results = fake_results()  # as the demo's: every spread over bags and the digits that survive vary too
    rng = np.random.default_rng(0)
    for c in ("r1_std", "r5_std", "r10_std"):
        results[c] = rng.uniform(0, 1, len(results)).round(2)
    results["stable_digits"] = rng.integers(2, 9, len(results))
    page = write_run(tmp_path, results)
    got = in_browser(page, tmp_path, """
      for (let i = 0; i < 200 && !document.querySelector('table#results thead tr:nth-child(2) th'); i++)
        await new Promise(r => setTimeout(r, 50));  // drawn by a module script after load, controls last
      const t = document.querySelector('table#results');
      return {table: t.getBoundingClientRect().width, page: document.documentElement.clientWidth,
              box: t.parentElement.clientWidth, scroll: document.documentElement.scrollWidth,
              columns: t.querySelectorAll('thead tr:first-child th').length};""")
    results = pd.read_csv(page.parent / "results.csv")
    varying = [c for c in results if not c.endswith("_bags")  # a column equal in every row is named above it
               and (c in ("chosen", "medr", "r1", "r5", "r10") or results[c].nunique(dropna=False) != 1)]
    assert len(varying) >= 15 and got["columns"] == len(varying), (varying, got)
    assert got["table"] <= got["box"] <= got["page"] and got["scroll"] <= got["page"], got  # no sideways scroll, inside either


def test_index_without_paper_config_says_not_in_this_grid(tmp_path):
    results = fake_results(kinds=("title",), features=("generated",), dims=(10, 25))
    html = write_run(tmp_path, results).read_text()
    assert "not in this grid" in html


def test_index_without_results_still_links_the_reports(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    steps = STEPS[:1] + [{"notebook": "02_fit", "seconds": 1.0, "ok": False, "state": "FAILED"}]
    html = report.write_index(run_dir, steps, {}).read_text()
    assert "No results.csv" in html and "failed" in html and "href='02_fit.html'" in html


def test_grid_index_heads_with_the_best_point(tmp_path):
    run_dir = tmp_path / "grid"
    a, b = fake_results(kinds=("title",), features=("generated",), seed=1), \
        fake_results(kinds=("title",), features=("given",), seed=2)
    for name, df in (("given_dir-null", a), ("given_dir-given", b)):
        (run_dir / name).mkdir(parents=True)
        save_csv(run_dir / name / "results.csv", df)
    (run_dir / "broken").mkdir()
    points = [{"point": p, "steps": STEPS, "error": None} for p in ("given_dir-null", "given_dir-given")]
    points.append({"point": "broken", "steps": STEPS[:1], "error": "01_extract failed: boom"})
    html = report.write_grid_index(run_dir, points, {p["point"]: {"n_bags": 10} for p in points}).read_text()
    combined = R.load(run_dir)
    best = tables.chosen_config(combined)
    val = [R.main_rows(df[df.chosen], "val", "im2recipe").medr.iloc[0] for df in (a, b)]
    assert best.point == ("given_dir-null", "given_dir-given")[int(np.argmin(val))]
    assert f"the best point's choice on val: <a href='{best.point}/index.html'>" in html
    assert "01_extract failed: boom" in html and "1 of 3 grid points" in html
    assert ">generated<" in html and ">given<" in html  # both feature sources in the paper tables
    assert set(combined.point) == {"given_dir-null", "given_dir-given"}
    for name, df in (("given_dir-null", a), ("given_dir-given", b)):  # the ablation table: val and test, both ways
        row = re.search(rf"<tr><td><a href='{name}/index.html'>.*?</tr>", html, re.S).group(0)
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)[1:]
        chosen = df[df.chosen]
        expected = [tables.cell(r.iloc[0][m], r.iloc[0][f"{m}_std"], r.iloc[0].n_bags) for split in ("val", "test")
                    for d in ("im2recipe", "recipe2im") for m in ("medr", "r10")
                    for r in [R.main_rows(chosen, split, d)]]
        assert cells == expected


def test_grid_of_kfold_points_heads_with_the_best_kfold_point_not_the_best_on_val(tmp_path):
    """Points that each chose by k-fold are compared by k-fold too (their folds are the same recipes):
    the point best on val but worse across the folds does not head the grid."""
    run_dir = tmp_path / "grid"
    frames = {"a": fake_results(kinds=("title",), seed=1), "b": fake_results(kinds=("title",), seed=2)}
    val = {p: R.main_rows(df[df.chosen], "val", "im2recipe").medr.iloc[0] for p, df in frames.items()}
    on_val, other = sorted(frames, key=val.get)
    for p, df in frames.items():
        (run_dir / p).mkdir(parents=True)
        save_csv(run_dir / p / "results.csv", df)
        chosen = df[df.chosen].iloc[0]
        medr = 3.0 if p == other else 9.0  # across the folds, the point that loses on val wins
        save_csv(run_dir / p / "kfold.csv", pd.DataFrame(
            [{**{k: chosen[k] for k in R.CV_KEYS}, "fold": f, "direction": "im2recipe", "medr": medr, "r1": 1.0,
              "r5": 2.0, "r10": 3.0} for f in range(5)]))
    points = [{"point": p, "steps": STEPS, "error": None} for p in frames]
    for select in ("kfold", "val"):
        for p in frames:
            save_text(run_dir / p / "params.yaml", f"select: {select}\n")
            runs_page.record(run_dir / p, STEPS)
        html = report.write_grid_index(run_dir, points, {p: {"select": select} for p in frames}).read_text()
        runs = runs_page.write(tmp_path).read_text()  # the runs page shows the same point's choice
        if select == "kfold":
            assert f"the best point's choice by k-fold cross-validation on train+val: <a href='{other}/index.html'>" \
                in html and f"@ {other}" in runs
            headline = re.search(r"<div class=\"headline\">.*?</table>", html, re.S).group(0)
            assert f"<td>{other}</td>" in headline and f"<td>{on_val}</td>" not in headline
        else:  # chosen on val: val decides
            assert f"the best point's choice on val: <a href='{on_val}/index.html'>" in html and f"@ {on_val}" in runs


def test_absent_paper_tables_and_dims_say_why():
    df = fake_results(kinds=("title",), dims=(10, 50), test_pairs=5000)
    out = tables.paper_tables(df)
    assert [t.split(" · ")[0] for t, _ in out] == ["Table 1", "Table 2"]
    assert "not in these results" in out[0][0]
    assert "the test split has 5,000 query pairs, fewer than a bag of 10,000" in out[0][1]
    assert "no rows at dim 768: not among the latent_dims of this run (10, 50)" in out[1][1]
    capped = df.assign(n_components=df.latent_dim.clip(upper=40))
    assert "no rows at dim 768: above the rank of the features (40 components at most)" in tables.paper_tables(capped)[1][1]
