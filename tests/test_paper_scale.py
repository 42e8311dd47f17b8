"""params/paper_scale.yaml at 1 % of Recipe1M's size: the paper-scale code path, in-process and on a cluster."""
import json
import re

import pandas as pd
import pytest
import yaml

from cmr_utils.runner import run as R
from cmr_utils.evaluate.results import load as results_of
from cmr_utils.data.synthetic import split_sizes

pytestmark = pytest.mark.slow
ROOT = R.ROOT


def test_paper_scale_grid_runs_scaled_down_the_same_in_process_and_on_local_cluster(tmp_path, capsys):
    params = yaml.safe_load((ROOT / "params" / "paper_scale.yaml").read_text())
    small = tmp_path / "paper_small.yaml"
    small.write_text(yaml.safe_dump({**params, "synthetic_scale": 0.01, "cache_dir": str(tmp_path / "cache")}))
    here = R.run(small, name="here", reports_dir=tmp_path / "reports")
    capsys.readouterr()
    there = R.run(small, ["cluster=local:2"], name="there", reports_dir=tmp_path / "reports")
    assert re.search(r"Dask cluster local:2: 2 workers, dashboard http", capsys.readouterr().out)
    results = results_of(here)
    pd.testing.assert_frame_equal(results_of(there), results)  # where it ran does not change a number
    test = results[(results.split == "test") & (results.fit_on == "train")]
    grid = test.groupby(["text_kind", "model"]).latent_dim.unique()
    assert set(grid.index) == {(k, m) for k in params["text_kinds"] for m in params["models"]}
    assert all(sorted(d) == params["latent_dims"] for d in grid)
    assert set(test.protocol) == {"full"}  # 1 % of Recipe1M's test split is smaller than a 1k bag
    n_test = split_sizes(0.01)["test"]
    assert test.n_pairs.unique().tolist() == [n_test]
    # the extraction report and the index name the cluster and link its dashboard
    manifest = json.loads((there / "features.json").read_text())
    assert manifest["cluster"]["workers"] == 2 and manifest["cluster"]["dashboard"].startswith("http")
    assert "Work spread over the Dask cluster" in (there / "index.html").read_text()
    assert "Work spread over the Dask cluster" not in (here / "index.html").read_text()
    # the t-SNE covers every test pair of every text kind, photos and recipes
    page = (there / "space.html").read_text()
    assert f"{n_test} pairs" in page
    for kind in params["text_kinds"]:
        assert f'"{kind}|photo"' in page and f'"{kind}|recipe"' in page
