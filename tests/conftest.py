"""Fixtures shared by the test modules: generated corpora, the real sample, the small demo run the report tests
read, and the runner's command line pointed at a temporary reports folder."""
import os
import sys
from pathlib import Path

import pytest
from helpers import SMALL, VIZ_KINDS

from cmr_utils.data import demo
from cmr_utils.paths import ROOT

SHARED = Path(os.environ.get("CMR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "epicurious-r1m"))

# `python -m cmr_utils ARGS` with the runner's reports folder moved to argv[1] (its CLI has no option for it)
@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small generated corpus in Recipe1M layout (read-only for tests)."""
    return demo.generate(tmp_path_factory.mktemp("demo") / "corpus", n_recipes=60, seed=3, progress=False)


@pytest.fixture(scope="session")
def shared_root():
    if not (SHARED / "layer1.json").exists():
        pytest.skip(f"real sample not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The SMALL demo run with the text kinds ``helpers.VIZ_KINDS``, run once per session (read-only for tests)."""
    from cmr_utils.runner import run as runner
    base = tmp_path_factory.mktemp("viz")
    params = base / "viz.yaml"
    params.write_text(f"cache_dir: {base / 'cache'}\n")
    return runner.run(params, SMALL + [f"text_kinds=[{', '.join(VIZ_KINDS)}]"], name="viz", reports_dir=base / "reports")


@pytest.fixture
def cli(tmp_path):
    """``cli(verb, *args)``: the argv of ``python -m cmr_utils verb *args --reports tmp_path/reports`` (run, compare),
    never into the repository's reports/ (run it with cwd=tmp_path, env=cli.env)."""
    def command(*args):
        return [sys.executable, "-m", "cmr_utils", *map(str, args), "--reports", str(tmp_path / "reports")]
    command.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return command
