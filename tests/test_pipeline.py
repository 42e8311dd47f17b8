"""The real notebooks, executed by papermill and rendered by nbconvert, end to end."""
import json
import re

import numpy as np
import pandas as pd
import pytest
from browser import in_browser
from helpers import SMALL

from cmr_utils.runner import run as R
from cmr_utils.evaluate.results import load as results_of
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.features.store import Features

pytestmark = pytest.mark.slow

COLUMNS = {"text_kind", "features", "model", "latent_dim", "score", "protocol", "direction",
           "medr", "r1", "r5", "r10", "chosen", "split"}


def images_in(page):
    return re.findall(r'<img[^>]+src="data:image/png;base64,([^"]{200,})"', page)


PROBE = """
  for (let i = 0; i < 100 && document.getElementById('results') && !document.querySelector('#results_wrapper .dt-info'); i++)
    await new Promise(r => setTimeout(r, 100));
  const info = document.querySelector('#results_wrapper .dt-info');
  const th = [...document.querySelectorAll('#results_wrapper thead th')].find(h => h.innerText.trim() === 'medr');
  let sorted = null;
  if (th) { const col = [...th.parentNode.children].indexOf(th);  // its order button: the controls' row
    document.querySelectorAll('#results_wrapper thead tr')[1].children[col].querySelector('.dtcc-button_order').click();
    await new Promise(r => setTimeout(r, 300));
    const v = [...document.querySelectorAll('#results tbody tr')].map(r => parseFloat(r.cells[col].innerText));
    sorted = v.every((x, i) => i === 0 || v[i - 1] <= x); }
  const imgs = [...document.images];
  return {images: imgs.length, sorted: sorted,
    rendered: imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
    rows: info ? parseInt(info.innerText.match(/of ([\\d,]+) entries/)[1].replace(/,/g, '')) : 0};"""


def check_report(run_dir):
    index = (run_dir / "index.html").read_text()
    for nb in R.NOTEBOOKS:
        assert f"href='{nb}.html'" in index
        assert (run_dir / f"{nb}.html").stat().st_size > 1000
    results = results_of(run_dir)
    assert COLUMNS <= set(results.columns)
    assert "<table" in index and "results.csv" in index
    chosen = results[results.chosen]
    assert len(chosen.drop_duplicates(["text_kind", "model", "latent_dim", "score"])) == 1
    assert set(chosen.split) == {"val", "test"}
    val = results[(results.split == "val") & (results.direction == "im2recipe")]
    assert chosen[(chosen.split == "val") & (chosen.direction == "im2recipe")].medr.iloc[0] == val.medr.min()
    assert (results.medr >= 1).all() and results[["r1", "r5", "r10"]].le(100).all().all()
    assert (results.r1 <= results.r5).all() and (results.r5 <= results.r10).all()
    assert len(images_in((run_dir / "04_visualize.html").read_text())) >= 4
    return results


def test_demo_pipeline_end_to_end(tmp_path):
    params = tmp_path / "demo.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\n")
    run_dir = R.run(params, SMALL, name="small", reports_dir=tmp_path / "reports")
    results = check_report(run_dir)
    assert set(results.text_kind) == {"title", "concat"} and set(results.latent_dim) == {2, 16}
    assert "sweep.fit(" not in (run_dir / "02_fit.html").read_text()  # code hidden by default
    index = in_browser(run_dir / "index.html", tmp_path, PROBE)
    assert index["rows"] == len(results) and index["sorted"] is True
    viz = in_browser(run_dir / "04_visualize.html", tmp_path, PROBE)
    assert viz["images"] >= 6 and viz["rendered"] == viz["images"]
    # a fresh run folder reuses the cached features and models and gives the same table
    again = R.run(params, SMALL, name="again", reports_dir=tmp_path / "reports")
    pd.testing.assert_frame_equal(results_of(again), results)


def test_rerun_skips_notebooks_that_are_up_to_date(tmp_path, capsys):
    params = tmp_path / "demo.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\n")
    small = SMALL + ["latent_dims=[4]", "text_kinds=[title]"]
    R.run(params, small, name="r", reports_dir=tmp_path / "reports")
    capsys.readouterr()
    R.run(params, small, name="r", reports_dir=tmp_path / "reports")
    assert capsys.readouterr().out.count("up to date") == 4
    R.run(params, small + ["n_bags=2"], name="r", reports_dir=tmp_path / "reports")
    out = capsys.readouterr().out
    assert "01_extract: up to date" in out and "02_fit: up to date" in out
    assert "03_evaluate: ok" in out and "04_visualize: ok" in out


def test_failing_notebook_still_reports_its_error(tmp_path):
    (tmp_path / "data").mkdir()  # layer files present (the runner's pre-checks pass), one unreadable
    (tmp_path / "data" / "layer1.json").write_text("{ not JSON")
    (tmp_path / "data" / "layer2.json").write_text("[]")
    params = tmp_path / "bad.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\ndata_dir: {tmp_path / 'data'}\n")
    with pytest.raises(RuntimeError, match="01_extract failed"):
        R.run(params, name="bad", reports_dir=tmp_path / "reports")
    html = (tmp_path / "reports" / "bad" / "01_extract.html").read_text()
    assert "layer1.json" in html and "Error" in html
    assert "<b>failed</b>" in (tmp_path / "reports" / "bad" / "index.html").read_text()


def test_shared_sample_end_to_end(tmp_path, shared_root):
    params = tmp_path / "real.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\ndata_dir: {shared_root}\n")
    run_dir = R.run(params, ["text_kinds=[title, instructions]", "models=[ridge]", "latent_dims=[10, 50]",
                             "scores=[correlation, cosine]", "n_bags=2", "tsne_points=100"],
                    name="real", reports_dir=tmp_path / "reports")
    results = check_report(run_dir)
    # recipes lacking instructions (or a title) are dropped for both kinds: one query set per split
    ds = Recipe1M(shared_root)
    for split in ("val", "test"):
        here = results[results.split == split]
        full = [r for r in ds.split(split) if r.title and r.instructions]
        assert set(here.protocol) == {"full"} and here.n_pairs.nunique() == 1
        assert len(full) - 5 <= here.n_pairs.iloc[0] <= len(full)
    evaluate, space = ((run_dir / page).read_text() for page in ("03_evaluate.html", "space.html"))
    for kind in ("title", "instructions"):
        assert f">{kind}<" in evaluate and kind in space, kind
    manifest = json.loads((run_dir / "features.json").read_text())
    counts = Recipe1M(shared_root).counts()
    for split in ("train", "val", "test"):
        img, txt = (Features.load(manifest[m][split] if m == "image" else manifest[m]["title"][split])
                    for m in ("image", "text"))
        assert img.X.dtype == np.float32 and img.X.shape[1] == 1280 and txt.X.shape[1] == 384
        assert len(txt.X) + len(txt.skipped) == counts.loc[split, "recipes"]
        expected = counts.loc[split, "images"] if split == "train" else counts.loc[split, "recipes"]
        assert len(img.X) + len(img.skipped) == expected  # every listed image: encoded or skipped with a reason
        assert np.isfinite(img.X).all() and (np.abs(img.X).sum(1) > 0).all()
    extract = (run_dir / "01_extract.html").read_text()
    for reason in ("truncated image", "empty file", "image file missing",
                   "layer2 entry for a recipe not in layer1", "empty title"):
        assert reason in extract, reason


def test_grid_runs_points_in_parallel_and_survives_a_failing_point(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    (tmp_path / "no-model").mkdir()  # a folder (the runner's pre-checks pass) without a model in it
    grid.write_text(f"cache_dir: {tmp_path / 'cache'}\ngrid:\n  text_encoder: [minilm, {tmp_path / 'no-model'}]\n")
    with pytest.raises(RuntimeError, match="1 of 2 grid points failed"):
        R.run(grid, SMALL + ["text_kinds=[title]", "latent_dims=[4]"], name="g", reports_dir=tmp_path / "reports", jobs=2)
    run_dir = tmp_path / "reports" / "g"
    index = (run_dir / "index.html").read_text()
    good, bad = "text_encoder-minilm", next(p.name for p in run_dir.iterdir() if "no-model" in p.name)
    assert f"href='{good}/index.html'" in index and f"href='{bad}/index.html'" in index
    check_report(run_dir / good)
    fingerprint = json.loads((run_dir / good / "features.json").read_text())["data"]["fingerprint"]
    assert f"<th>data fingerprint</th><td>{fingerprint}</td>" in index
    assert "not available offline" in (run_dir / bad / "01_extract.html").read_text()
    combined = results_of(run_dir)
    assert set(combined.point) == {good}


def test_grid_axis_typo_fails_before_running(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  latent_dimz: [[2], [4]]\n")
    with pytest.raises(R.P.ParameterError, match="latent_dimz.*latent_dims"):
        R.run(grid, reports_dir=tmp_path / "reports")
    assert not (tmp_path / "reports").exists()
