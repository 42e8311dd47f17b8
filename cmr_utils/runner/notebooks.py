"""The notebooks a run executes, in order, and the parameters each one declares."""
from __future__ import annotations

from pathlib import Path

from cmr_utils.runner import params as P

from cmr_utils.paths import NOTEBOOK_DIR
NOTEBOOKS = ("01_extract", "02_fit", "03_evaluate", "04_visualize")


def source(nb: str) -> Path:
    return NOTEBOOK_DIR / f"{nb}.py"


def declared() -> dict[str, dict]:
    """{notebook: {parameter: default}}: what a run's parameters are checked against and handed out by."""
    return {nb: P.notebook_parameters(source(nb)) for nb in NOTEBOOKS}
