"""The kernel the runner's notebooks run on, and running one notebook on it.

The spec binds this interpreter, so the notebooks run in the runner's environment. It lives in
the run folder, which only this run writes: a cache may be read-only, or shared with runs of
other interpreters. The kernel leaves its own stderr on the runner's terminal, where
``cmr_utils.progress`` sends the bars (ipykernel would otherwise copy file descriptor 2 into the
notebook too), and talks to the runner over CurveZMQ, without which ipykernel warns on every start.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from cmr_utils.io import save_json
from cmr_utils.runner.notebooks import source
from cmr_utils.progress import RUNNER_ENV

KERNEL = "cmr"
JUPYTER_PATH = os.environ.get("JUPYTER_PATH")  # the caller's, before the kernel spec's folder is put first


def install(run_dir: Path) -> None:
    """Write the runner's ``cmr`` kernel spec into ``run_dir/.jupyter`` and put it first on the search path."""
    home = run_dir / ".jupyter"
    save_json(home / "kernels" / KERNEL / "kernel.json",
              {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                        "--IPKernelApp.capture_fd_output=False"],
               "display_name": "cmr", "language": "python", "env": RUNNER_ENV,
               "metadata": {"supported_encryption": ["curve"]}})
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(home), *filter(None, [JUPYTER_PATH])])


def execute(nb: str, parameters: dict, run_dir: Path) -> str | None:
    """Run one notebook into ``run_dir/<nb>.ipynb``; return its error or None.

    papermill saves the notebook as cells run, into a file beside it that replaces it once saved
    whole (a failed cell included): a full disk or a killed run leaves the previous notebook.
    """
    import jupytext
    import nbformat
    import papermill as pm
    from traitlets.config import Config
    notebook = jupytext.read(source(nb))
    notebook.metadata["kernelspec"] = {"name": KERNEL, "display_name": "cmr", "language": "python"}
    part = run_dir / f".{nb}.part.ipynb"
    error = None
    try:
        pm.execute_notebook(notebook, str(part), parameters=parameters, kernel_name=KERNEL, cwd=str(run_dir),
                            progress_bar=False, config=Config({"KernelManager": {"transport_encryption": "required"}}))
    except pm.PapermillExecutionError as e:
        error = f"{nb} failed: {e.ename}: {e.evalue}"
    except Exception as e:  # the kernel died, papermill could not start it or save the notebook: report, never hang
        error = f"{nb} failed: {type(e).__name__}: {e}"
    try:
        nbformat.read(part, as_version=4)
        os.replace(part, run_dir / f"{nb}.ipynb")
    except (OSError, ValueError):  # never written, or cut short
        part.unlink(missing_ok=True)
    return error
