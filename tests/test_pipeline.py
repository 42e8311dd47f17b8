"""The real notebooks, executed by papermill and rendered by nbconvert, end to end."""
import re

import pandas as pd
import pytest

from cmr_utils import run as R
from cmr_utils import stages
from cmr_utils.data import Recipe1M
from cmr_utils.retrieval import protocol_name

pytestmark = pytest.mark.slow

COLUMNS = {"text_kind", "features", "model", "latent_dim", "score", "protocol", "direction",
           "medr", "r1", "r5", "r10", "chosen", "split"}
SMALL = ["demo_recipes=160", "text_kinds=[title, all]", "models=[cca, ridge]", "latent_dims=[2, 16]",
         "scores=[correlation]", "bag_sizes=[40]", "n_bags=3", "tsne_points=60", "n_examples=2"]


def images_in(html):
    return re.findall(r'<img[^>]+src="data:image/png;base64,([^"]{200,})"', html)


def check_report(run_dir):
    index = (run_dir / "index.html").read_text()
    for nb in R.NOTEBOOKS:
        assert f"href='{nb}.html'" in index
        assert (run_dir / f"{nb}.html").stat().st_size > 1000
    results = stages.load_results(run_dir)
    assert COLUMNS <= set(results.columns)
    assert "<table" in index and "results.csv" in index
    chosen = results[results.chosen]
    assert len(chosen.drop_duplicates(["text_kind", "model", "latent_dim", "score"])) == 1
    assert set(chosen.split) == {"val", "test"}
    assert (results.medr >= 1).all() and results[["r1", "r5", "r10"]].le(100).all().all()
    assert (results.r1 <= results.r5).all() and (results.r5 <= results.r10).all()
    assert len(images_in((run_dir / "04_visualize.html").read_text())) >= 4
    return results


def test_demo_pipeline_end_to_end(tmp_path):
    params = tmp_path / "demo.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\n")
    run_dir = R.run(params, SMALL, name="small", reports_dir=tmp_path / "reports")
    results = check_report(run_dir)
    assert set(results.text_kind) == {"title", "all"} and set(results.latent_dim) == {2, 16}
    html = (run_dir / "02_fit.html").read_text()
    assert "stages.fit(" not in html  # code hidden by default
    # a rerun reuses the cached features and models and gives the same table
    again = R.run(params, SMALL, name="again", reports_dir=tmp_path / "reports")
    pd.testing.assert_frame_equal(stages.load_results(again), results)


def test_failing_notebook_still_reports_its_error(tmp_path):
    (tmp_path / "data").mkdir()
    params = tmp_path / "bad.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\ndata_dir: {tmp_path / 'data'}\n")
    with pytest.raises(RuntimeError, match="01_extract failed"):
        R.run(params, name="bad", reports_dir=tmp_path / "reports")
    html = (tmp_path / "reports" / "bad" / "01_extract.html").read_text()
    assert "layer1.json" in html and "FileNotFoundError" in html
    assert "failed" in (tmp_path / "reports" / "bad" / "index.html").read_text()


def test_shared_sample_end_to_end(tmp_path, shared_root):
    params = tmp_path / "real.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\ndata_dir: {shared_root}\n")
    run_dir = R.run(params, ["text_kinds=[title]", "models=[ridge]", "latent_dims=[10, 50]",
                             "scores=[correlation, cosine]", "n_bags=2", "tsne_points=100"],
                    name="real", reports_dir=tmp_path / "reports")
    results = check_report(run_dir)
    titled = sum(1 for r in Recipe1M(shared_root).split("test") if r.title)
    assert set(results[results.split == "test"].protocol) == {protocol_name(titled) if titled < 1000 else "1k"}
    extract = (run_dir / "01_extract.html").read_text()
    for reason in ("truncated image", "empty file", "image file missing",
                   "layer2 entry for a recipe not in layer1", "empty title"):
        assert reason in extract, reason
