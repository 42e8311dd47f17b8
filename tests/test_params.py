import re

import pytest

from cmr_utils import cli
from cmr_utils.runner import kernelspec
from cmr_utils.runner import params as P
from cmr_utils.runner import notebooks as pipeline
from cmr_utils.runner import run as R

NOTEBOOKS = pipeline.declared()


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


def test_a_grid_naming_its_points_changes_one_lever_at_a_time():
    points = R.expand({"n_bags": 3, "text_layer": -1,
                       "grid": {"base": {}, "layer-2": {"text_layer": -2}, "both": {"n_bags": 5, "text_layer": -2}}},
                      "ablation.yaml")
    assert [label for label, _ in points] == ["base", "layer-2", "both"]
    assert [(p["n_bags"], p["text_layer"]) for _, p in points] == [(3, -1), (3, -2), (5, -2)]
    with pytest.raises(P.ParameterError, match="'layer'.*text_layer"):
        R.expand({"grid": {"base": {}, "layer": {"text_layer": "last"}}}, "ablation.yaml")
    assert R.expand({"grid": {"base": None}}, "ablation.yaml") == [("base", {})]  # `base:` with nothing after it
    for name in ("../up", "index.html", 1, True):  # YAML reads 1 and on as int and bool: they would be renamed
        with pytest.raises(P.ParameterError, match="folder names"):
            R.expand({"grid": {name: {"text_layer": -2}}}, "ablation.yaml")
    for mixed in ({"base": {}, "text_layer": [-2]}, [{"text_layer": -2}]):
        with pytest.raises(P.ParameterError, match="point names mapped"):
            R.expand({"grid": mixed}, "ablation.yaml")


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


def test_runner_rejects_typo_before_running_anything(tmp_path, monkeypatch, capsys):
    """(How fast the refusal comes: benchmarks/early_stops.py.)"""
    f = tmp_path / "grid.yaml"
    f.write_text("demo_recipes: 100\nmodles: [cca]\n")
    monkeypatch.setattr(kernelspec, "execute", lambda *a, **k: pytest.fail("a notebook ran"))
    assert cli.main(["run", str(f), "--name", "typo", "--reports", str(tmp_path / "reports")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[cmr] error: ") and "modles" in err and "'models'" in err and err.count("\n") == 1
    assert not (tmp_path / "reports").exists()


def test_path_parameters_expand_environment_variables(monkeypatch):
    monkeypatch.delenv("CMR_TEST_DATA", raising=False)
    assert R.expand_path("${CMR_TEST_DATA:-../shared/x}") == "../shared/x"
    monkeypatch.setenv("CMR_TEST_DATA", "/data/r1m")
    assert R.expand_path("${CMR_TEST_DATA:-../shared/x}") == "/data/r1m"
    assert R.expand_path("$CMR_TEST_DATA/images") == "/data/r1m/images"


@pytest.mark.parametrize("name, value, accepted", [
    ("shrinkage", [0.5, 1.5], "[0, 1]"), ("shrinkage", [-0.1], "[0, 1]"),
    ("latent_dims", [0], "≥ 1"), ("n_bags", 0, "≥ 1"), ("batch_size", 0, "≥ 1"),
    ("num_workers", -1, "≥ 0"), ("bag_sizes", [-1], "≥ 0"),
    ("text_kinds", ["titel"], "'concat'"), ("scores", ["dot"], "'weighted'"), ("models", ["pls"], "'exact'"),
    ("image_encoder", "vgg", "'resnet50'"), ("text_pooling", "max", "'cls'"), ("ingredients", "parsed", "'detected'"),
    ("concat_parts", ["title", "concat"], "'lexical'"), ("concat_parts", ["title", "title"], "distinct"),
    ("lexical_dims", 0, "≥ 1"), ("lexical_ngrams", 3, "≤ 2"), ("lexical_parts", ["all"], "'title'"),
    ("lexical_parts", ["title", "title"], "distinct"),
    *[(name, [], "non-empty") for name in ("text_kinds", "models", "latent_dims", "shrinkage", "scores", "bag_sizes",
                                          "concat_parts", "lexical_parts")],
])
def test_out_of_range_value_names_parameter_file_and_accepted_values(name, value, accepted):
    with pytest.raises(P.ParameterError) as e:
        P.check({name: value}, NOTEBOOKS, "x.yaml")
    msg = str(e.value)
    assert f"'{name}'" in msg and "x.yaml" in msg and accepted in msg, msg


def test_boundary_values_are_accepted():
    P.check({"shrinkage": [0, 1], "latent_dims": [1], "bag_sizes": [0, 40], "n_bags": 1, "batch_size": 1,
             "num_workers": 0, "text_kinds": ["title", "concat", "lexical"], "scores": ["weighted"],
             "models": ["exact"], "image_encoder": "resnet50", "text_pooling": "cls", "ingredients": "detected",
             "concat_parts": ["title", "ingredients", "instructions", "lexical"], "lexical_dims": 1,
             "lexical_parts": ["title"], "lexical_ngrams": 1}, NOTEBOOKS, "x.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("n_bags: 3\nmodels: cca: ridge\n")
    with pytest.raises(P.ParameterError, match=rf"{f}.*line 2"):
        P.load(f)
    f.write_text("n_bags: 3\n")
    with pytest.raises(P.ParameterError, match=r"latent_dims=\[2,"):
        P.load(f, ["latent_dims=[2,"])


@pytest.mark.parametrize("override", ["data_dir=no", "data_dir=123", "given_dir=true", "image_weights=1.5",
                                      "cache_dir=no", "cache_dir=123", "text_encoder=no", "data_dir=''"])
def test_path_parameters_must_be_strings(tmp_path, override):
    f = tmp_path / "p.yaml"
    f.write_text("n_bags: 3\n")
    with pytest.raises(P.ParameterError, match=override.split("=")[0]):
        R.expand(P.load(f, [override]), str(f))


def test_none_only_where_the_default_is_none():
    for bad in ({"n_bags": None}, {"shrinkage": None}, {"latent_dims": [None]}, {"text_kinds": None}):
        with pytest.raises(P.ParameterError, match=next(iter(bad))):
            P.check(bad, NOTEBOOKS, "x.yaml")
    P.check({"data_dir": None, "image_weights": None, "given_dir": None, "device": None, "pca": None},
            NOTEBOOKS, "x.yaml")


def test_grid_point_folders_never_collide(monkeypatch):
    monkeypatch.delitem(P.RULES, "device")  # a free-text axis, whatever device names are valid
    values = ["a_b", "a-b", "x/y", "x y", "1", "2", "true", "", "-", "ab/"]
    points = R.expand({"grid": {"device": values}}, "g.yaml")
    labels = [label for label, _ in points]
    assert len(set(labels)) == len(values), labels
    assert all(re.fullmatch(r"[A-Za-z0-9._+-]+", label) for label in labels), labels
    assert R.expand({"grid": {"text_layer": [-2, 2]}}, "g.yaml")[0][0] != R.expand(
        {"grid": {"text_layer": [2]}}, "g.yaml")[0][0]
    # a value whose text is a plain folder name keeps it
    assert [label for label, _ in R.expand({"grid": {"text_pooling": ["mean", "cls"], "text_layer": [-1]}}, "g")] == [
        "text_pooling-mean_text_layer--1", "text_pooling-cls_text_layer--1"]


def test_up_to_date_stamps_cover_the_photos(demo_root, tmp_path):
    """A photo replaced in the data folder must rerun extraction, not count as up to date."""
    import shutil

    from cmr_utils.runner.stamps import inputs_key
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    before = inputs_key({"data_dir": str(root)})
    photo = next((root / "images").rglob("*.jpg"))
    photo.write_bytes(photo.read_bytes() + b"\0")
    assert inputs_key({"data_dir": str(root)}) != before


def test_stamps_and_the_runs_page_cover_every_source_file_of_the_subpackages(tmp_path, monkeypatch):
    """A change in any module of any subpackage (here fit/) reruns the notebooks and marks recorded runs out of date."""
    from cmr_utils import paths
    from cmr_utils.report import runs_page
    from cmr_utils.runner import stamps
    package = tmp_path / "cmr_utils"
    (package / "fit").mkdir(parents=True)
    (package / "io.py").write_text("x = 1\n")
    (package / "fit" / "space.py").write_text("y = 1\n")
    monkeypatch.setattr(paths, "PACKAGE", package)
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    monkeypatch.setattr(stamps, "PACKAGE", package)
    monkeypatch.setattr(runs_page, "ROOT", tmp_path)
    monkeypatch.setattr(runs_page, "NOTEBOOK_DIR", tmp_path / "notebooks")
    before = stamps.inputs_key({}), runs_page.code_key()
    (package / "fit" / "space.py").write_text("y = 2\n")
    after = stamps.inputs_key({}), runs_page.code_key()
    assert before[0] != after[0] and before[1] != after[1]


def test_a_set_typo_is_blamed_on_the_command_line(tmp_path, capsys):
    assert cli.main(["run", str(R.ROOT / "params" / "demo.yaml"), "--set", "latent_dimz=[3]",
                     "--reports", str(tmp_path / "reports")]) == 1
    err = capsys.readouterr().err
    assert "--set: unknown parameter 'latent_dimz'; did you mean 'latent_dims'?" in err and "demo.yaml" not in err
    assert cli.main(["run", str(R.ROOT / "params" / "demo.yaml"), "--set", "n_bags=ten"]) == 1
    assert "--set: parameter 'n_bags'" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("override,named", [
    ("data_dir=/nope", "data_dir /nope is not a folder"),
    ("data_dir=.", "has no layer1.json or layer2.json"),
    ("given_dir=/nope/given", "given_dir /nope/given is not a folder"),
    ("image_weights=/nope/resnet50.pth", "image_weights /nope/resnet50.pth is not a file"),
    ("text_encoder=/nope/bert", "text_encoder /nope/bert is not a folder"),
    ("cluster=tcp://127.0.0.1:9", "cluster tcp://127.0.0.1:9: no scheduler answers there"),
])
def test_a_missing_input_stops_before_the_run_folder_is_touched(tmp_path, monkeypatch, override, named):
    """A mistaken run must not overwrite the last good report: what the runner can check, it checks first."""
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "reports" / "demo"
    old.mkdir(parents=True)
    (old / "index.html").write_text("the last good report")
    (old / "params.yaml").write_text("data_dir: null\n")
    before = snapshot(tmp_path / "reports")
    monkeypatch.setattr(kernelspec, "execute", lambda *a, **k: pytest.fail("a notebook ran"))
    with pytest.raises(P.ParameterError, match=re.escape(named)):
        R.run(R.ROOT / "params" / "demo.yaml", [override], reports_dir=tmp_path / "reports")
    assert snapshot(tmp_path / "reports") == before
    assert not (tmp_path / "reports" / "demo" / ".lock").exists()
