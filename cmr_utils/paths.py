"""The project's folders, computed in one place: every module finds the notebooks, reports and cache from here,
whatever the working directory."""
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
NOTEBOOK_DIR = ROOT / "notebooks"
REPORTS = ROOT / "reports"
CACHE = ROOT / "cache"


def sources() -> list[Path]:
    """Every source file of the package, subpackages included, in a stable order: what up-to-date stamps cover."""
    return sorted(PACKAGE.rglob("*.py"))
