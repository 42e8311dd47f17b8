import time

import pytest

from cmr_utils import params as P
from cmr_utils import run as R

NOTEBOOKS = {nb: P.notebook_parameters(R.NOTEBOOK_DIR / f"{nb}.py") for nb in R.NOTEBOOKS}


def test_every_notebook_declares_its_run_folder():
    for nb, declared in NOTEBOOKS.items():
        assert "run_dir" in declared, nb


@pytest.mark.parametrize("yaml_file", sorted((R.ROOT / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_params_files_are_valid(yaml_file):
    assert R.expand(P.load(yaml_file), str(yaml_file))


def test_grid_expands_to_the_cartesian_product():
    points = R.expand({"n_bags": 3, "grid": {"text_layer": [-2, -1], "scores": [["cosine"], ["weighted"]]}}, "g.yaml")
    assert len(points) == 4 and len({label for label, _ in points}) == 4
    assert all(p["n_bags"] == 3 for _, p in points)
    assert {(p["text_layer"], p["scores"][0]) for _, p in points} == {
        (-2, "cosine"), (-2, "weighted"), (-1, "cosine"), (-1, "weighted")}
    assert R.expand({"n_bags": 3}, "x.yaml") == [("", {"n_bags": 3})]
    with pytest.raises(P.ParameterError, match="text_layer"):
        R.expand({"grid": {"text_layer": ["last"]}}, "g.yaml")
    with pytest.raises(P.ParameterError, match="grid"):
        R.expand({"grid": {"text_layer": []}}, "g.yaml")


def test_misspelt_key_names_key_file_and_closest_name():
    with pytest.raises(P.ParameterError) as e:
        P.check({"latent_dimz": [2, 10]}, NOTEBOOKS, "grid.yaml")
    msg = str(e.value)
    assert "latent_dimz" in msg and "grid.yaml" in msg and "'latent_dims'" in msg


def test_wrong_type_is_an_error():
    with pytest.raises(P.ParameterError, match="shrinkage"):
        P.check({"shrinkage": ["lots"]}, NOTEBOOKS, "x.yaml")
    with pytest.raises(P.ParameterError, match="n_bags"):
        P.check({"n_bags": 2.5}, NOTEBOOKS, "x.yaml")
    with pytest.raises(P.ParameterError, match="latent_dims"):
        P.check({"latent_dims": [2, "ten"]}, NOTEBOOKS, "x.yaml")
    P.check({"shrinkage": [1, 0.5], "data_dir": "/somewhere", "latent_dims": [3]}, NOTEBOOKS, "x.yaml")


def test_overrides_are_parsed_as_yaml(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("n_bags: 10\nmodels: [cca]\n")
    p = P.load(f, ["n_bags=3", "latent_dims=[2, 5]", "data_dir=/x/y"])
    assert p == {"n_bags": 3, "models": ["cca"], "latent_dims": [2, 5], "data_dir": "/x/y"}
    with pytest.raises(P.ParameterError):
        P.load(f, ["n_bags"])


def test_runner_rejects_typo_before_running_anything(tmp_path):
    f = tmp_path / "grid.yaml"
    f.write_text("demo_recipes: 100\nmodles: [cca]\n")
    t0 = time.time()
    assert R.main([str(f), "--name", "typo"]) == 1
    assert time.time() - t0 < 10
    assert not (R.ROOT / "reports" / "typo").exists()


def test_path_parameters_expand_environment_variables(monkeypatch):
    monkeypatch.delenv("CMR_TEST_DATA", raising=False)
    assert R.expand_path("${CMR_TEST_DATA:-../shared/x}") == "../shared/x"
    monkeypatch.setenv("CMR_TEST_DATA", "/data/r1m")
    assert R.expand_path("${CMR_TEST_DATA:-../shared/x}") == "/data/r1m"
    assert R.expand_path("$CMR_TEST_DATA/images") == "/data/r1m/images"
