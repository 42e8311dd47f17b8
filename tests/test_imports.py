"""torch only where encoding happens: the runner, parameters, fitting, evaluation and report modules import no torch."""
import json
import subprocess
import sys

TORCH_FREE = ["cmr_utils.runner.run", "cmr_utils.runner.params", "cmr_utils.fit.sweep", "cmr_utils.evaluate.stage",
              "cmr_utils.report.search", "cmr_utils.report.plots", "cmr_utils.report.space_page",
              "cmr_utils.report.index", "cmr_utils.report.runs_page", "cmr_utils.run_dir", "cmr_utils.features",
              "cmr_utils.features.names", "cmr_utils.features.extract", "cmr_utils.data.photos"]
HEAVY = ("torch", "torchvision", "transformers")


def test_torch_free_modules_import_no_torch():
    """In a fresh interpreter (this one may have torch loaded already) every module above imports without them."""
    script = (f"import importlib, json, sys\nfor m in {TORCH_FREE!r}: importlib.import_module(m)\n"
              f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == []
