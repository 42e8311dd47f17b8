import os
from pathlib import Path

import pytest

from cmr_utils.data import demo

SHARED = Path(os.environ.get("CMR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "epicurious-r1m"))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small generated corpus in Recipe1M layout (read-only for tests)."""
    return demo.generate(tmp_path_factory.mktemp("demo") / "corpus", n_recipes=60, seed=3, progress=False)


@pytest.fixture(scope="session")
def shared_root():
    if not (SHARED / "layer1.json").exists():
        pytest.skip(f"real sample not found at {SHARED}")
    return SHARED
