"""Interactive use: the notebooks run top to bottom in JupyterLab, on its `cmr` kernel, give the runner's numbers."""
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import pandas as pd
import pytest
import requests
import yaml
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

from cmr_utils.runner import run as R
from cmr_utils import paths
from cmr_utils import run_dir as rd
from cmr_utils.runner.notebooks import NOTEBOOKS, declared, source

TINY = {"demo_recipes": 160, "text_kinds": ["title"], "models": ["ridge"], "latent_dims": [4], "scores": ["cosine"],
        "bag_sizes": [40], "n_bags": 2, "tsne_points": 60, "n_examples": 2}


def test_the_notebook_defaults_are_the_demo():
    """`make report` runs params/demo.yaml; a notebook run with its defaults must compute the same."""
    demo = yaml.safe_load((R.ROOT / "params" / "demo.yaml").read_text())
    defaults = {k: v for d in declared().values() for k, v in d.items()}
    assert {k: defaults.get(k) for k in demo} == demo


@pytest.fixture
def cmr_kernel(monkeypatch):
    """The kernel spec JupyterLab finds for the notebooks' `cmr`: the venv's own."""
    monkeypatch.delenv("JUPYTER_PATH", raising=False)  # a runner earlier in this process put its own spec first
    try:
        spec = KernelSpecManager().get_kernel_spec("cmr")
    except NoSuchKernel:
        pytest.fail("no 'cmr' kernel where JupyterLab looks for one: `make env` installs it into the venv")
    assert Path(spec.resource_dir).is_relative_to(sys.prefix), spec.resource_dir


@pytest.mark.slow
def test_notebooks_run_as_in_jupyterlab_give_the_runners_results(tmp_path, cmr_kernel):
    here = tmp_path / "notebooks"  # a kernel starts in its notebook's folder
    here.mkdir()
    notebooks = declared()
    user = {**TINY, "cache_dir": str(tmp_path / "cache"), "run_dir": str(tmp_path / "reports" / "interactive")}
    for nb in NOTEBOOKS:
        notebook = jupytext.read(source(nb))  # asks for kernel `cmr`, as in JupyterLab
        cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        cell.source += "".join(f"\n{k} = {v!r}" for k, v in user.items() if k in notebooks[nb])  # the user's edit
        NotebookClient(notebook, resources={"metadata": {"path": str(here)}}).execute()
        outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("name") == "stderr"], nb  # no IProgress warning, no text bars
        if nb == "01_extract":
            assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    params = tmp_path / "tiny.yaml"
    params.write_text(yaml.safe_dump({**TINY, "cache_dir": str(tmp_path / "cache")}))
    runner = R.run(params, name="runner", reports_dir=tmp_path / "reports")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "reports" / "interactive" / "results.csv"),
                                  pd.read_csv(runner / "results.csv"))


@pytest.mark.slow
def test_notebooks_run_as_in_jupyterlab_after_the_runner_reuse_its_cache(tmp_path, cmr_kernel):
    """After the runner, the four notebooks run JupyterLab's way (kernel `cmr`, started in the notebook's
    folder, and once in another folder) write no new moments or model files and give the same results.csv."""
    cache = tmp_path / "cache"
    params = tmp_path / "tiny.yaml"
    params.write_text(yaml.safe_dump({**TINY, "cache_dir": str(cache)}))
    runner = R.run(params, name="runner", reports_dir=tmp_path / "reports")
    cached = lambda: sorted([*(cache / "moments").glob("*.npz"), *(cache / "models").glob("*.joblib")])  # noqa: E731
    before = cached()
    assert before
    notebooks = declared()
    for where, run in (("notebooks", "interactive"), ("elsewhere", "elsewhere")):
        here = tmp_path / where  # a kernel starts in its notebook's folder
        here.mkdir()
        user = {**TINY, "cache_dir": str(cache), "run_dir": str(tmp_path / "reports" / run)}  # the user's edit
        for nb in NOTEBOOKS:
            notebook = jupytext.read(source(nb))  # asks for kernel `cmr`, as in JupyterLab
            cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
            cell.source += "".join(f"\n{k} = {v!r}" for k, v in user.items() if k in notebooks[nb])
            NotebookClient(notebook, resources={"metadata": {"path": str(here)}}).execute()
            outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
            assert not [o for o in outputs if o.get("name") == "stderr"], nb
        assert cached() == before, where
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "reports" / run / "results.csv"),
                                      pd.read_csv(runner / "results.csv"))

def test_make_lab_serves_jupyterlab_with_the_cmr_kernel(tmp_path):
    """`make lab` starts JupyterLab for root too (a container, a cloud notebook box), which it refuses
    without --allow-root; a normal user is not given that flag."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_PATH": ""}
    lab = subprocess.Popen(["make", "-o", "env", "lab", f"LAB_ARGS={args}"], cwd=R.ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}
    try:
        deadline = time.time() + 90
        while True:
            assert lab.poll() is None, lab.stderr.read().decode()[-2000:]
            try:
                page = requests.get(f"{base}/lab", params={"token": token}, timeout=5)
                break
            except requests.ConnectionError:
                assert time.time() < deadline, "JupyterLab did not answer within 90 s"
                time.sleep(1)
        assert page.status_code == 200 and "JupyterLab" in page.text
        specs = requests.get(f"{base}/api/kernelspecs", headers=auth, timeout=10).json()["kernelspecs"]
        assert "cmr" in specs, sorted(specs)
        assert requests.get(f"{base}/api/kernelspecs", timeout=10).status_code == 403  # the token is needed
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()


@pytest.mark.parametrize("uid,flag", [("0", True), ("1000", False)])
def test_make_lab_allows_root_only_as_root(tmp_path, uid, flag):
    (tmp_path / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (tmp_path / "id").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    dry = subprocess.run(["make", "-n", "-o", "env", "lab"], cwd=R.ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "jupyter lab notebooks/" in dry and ("--allow-root" in dry) == flag


def test_notebook_folders_default_to_the_project_from_any_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert rd.cache_folder(None) == R.ROOT / "cache" and rd.cache_folder("c") == Path("c")
    assert rd.run_folder("01_extract", {"run_dir": None}) == R.ROOT / "reports" / "interactive"
    assert rd.run_folder("03_evaluate", {"run_dir": str(tmp_path / "x")}) == tmp_path / "x"


def test_a_notebook_opened_after_the_runner_goes_on_from_its_latest_output(tmp_path, monkeypatch, capsys):
    """02_fit in the default folder without 01_extract run there: the runner's features.json, if the runner
    ran with this notebook's parameters (a key the params file leaves out is the notebook's default)."""
    for name, folder in (("ROOT", tmp_path), ("REPORTS", tmp_path / "reports"), ("CACHE", tmp_path / "cache")):
        monkeypatch.setattr(paths, name, folder)
    defaults = declared()["02_fit"]
    for name, models, age in (("old", ["cca", "ridge"], 100), ("demo", ["cca", "ridge"], 50), ("other", ["exact"], 0)):
        run = tmp_path / "reports" / name
        run.mkdir(parents=True)
        (run / "params.yaml").write_text(yaml.safe_dump({"models": models, "run_dir": str(run),
                                                         "cache_dir": str(tmp_path / "cache")}))
        (run / "features.json").write_text(name)
        os.utime(run / "features.json", (time.time() - age,) * 2)
    params = {**defaults, "run_dir": None, "cache_dir": None, "models": ["cca", "ridge"]}
    run_dir = rd.run_folder("02_fit", params)
    assert run_dir == tmp_path / "reports" / "interactive" and (run_dir / "features.json").read_text() == "demo"
    assert "features.json: from reports/demo, the latest runner output with these parameters" in capsys.readouterr().out
    assert rd.run_folder("02_fit", params) == run_dir and capsys.readouterr().out == ""  # now its own
    rd.run_folder("03_evaluate", {**declared()["03_evaluate"], "run_dir": None})  # no runner wrote models.json
    assert not (run_dir / "models.json").exists() and (run_dir / "features.json").read_text() == "demo"
