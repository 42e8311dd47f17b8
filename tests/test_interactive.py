"""Interactive use: the notebooks run top to bottom in JupyterLab, on its `cmr` kernel, give the runner's numbers."""
import sys
from pathlib import Path

import jupytext
import pandas as pd
import pytest
import yaml
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

from cmr_utils import run as R
from cmr_utils.pipeline import NOTEBOOKS, declared, source

TINY = {"demo_recipes": 160, "text_kinds": ["title"], "models": ["ridge"], "latent_dims": [4], "scores": ["cosine"],
        "bag_sizes": [40], "n_bags": 2, "tsne_points": 60, "n_examples": 2}


def test_the_notebook_defaults_are_the_demo():
    """`make report` runs params/demo.yaml; a notebook run with its defaults must compute the same."""
    demo = yaml.safe_load((R.ROOT / "params" / "demo.yaml").read_text())
    defaults = {k: v for d in declared().values() for k, v in d.items()}
    assert {k: defaults.get(k) for k in demo} == demo


@pytest.mark.slow
def test_notebooks_run_as_in_jupyterlab_give_the_runners_results(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTER_PATH", raising=False)  # a runner earlier in this process put its own spec first
    try:
        spec = KernelSpecManager().get_kernel_spec("cmr")
    except NoSuchKernel:
        pytest.fail("no 'cmr' kernel where JupyterLab looks for one: `make env` installs it into the venv")
    assert Path(spec.resource_dir).is_relative_to(sys.prefix), spec.resource_dir
    here = tmp_path / "notebooks"  # a kernel starts in its notebook's folder: ../cache and ../reports land in tmp_path
    here.mkdir()
    notebooks = declared()
    for nb in NOTEBOOKS:
        notebook = jupytext.read(source(nb))  # asks for kernel `cmr`, as in JupyterLab
        cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        cell.source += "".join(f"\n{k} = {v!r}" for k, v in TINY.items() if k in notebooks[nb])  # the user's edit
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
