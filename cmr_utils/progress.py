"""Progress bars where the person waiting sees them: the terminal that runs a report, or the notebook in JupyterLab.

Inside a kernel ``sys.stderr`` is captured into the notebook, so a bar written there fills the
report people share with hundreds of lines. The runner's kernels (``cmr_utils.runner.kernelspec``) get
``RUNNER_ENV`` and leave the process's own stderr (``sys.__stderr__``) on the runner's terminal.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm as text_bar
from tqdm.auto import tqdm as auto_bar

# progress to the runner's terminal; library bars (transformers' "Loading weights") off
RUNNER_ENV = {"CMR_PROGRESS": "terminal", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def bar(iterable=None, **kwargs):
    """A tqdm bar: on the runner's terminal in a report run, else tqdm.auto's (a widget in JupyterLab)."""
    if os.environ.get("CMR_PROGRESS") == "terminal":
        return text_bar(iterable, file=sys.__stderr__, **kwargs)
    return auto_bar(iterable, **kwargs)
