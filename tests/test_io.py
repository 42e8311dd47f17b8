"""Files the pipeline writes: readable by the group, whole or not at all, and a finished cache needs no write access."""
import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
from helpers import fake_results

from cmr_utils import cli
from cmr_utils.data import demo
from cmr_utils.features import store as features
from cmr_utils import io
from cmr_utils.runner import kernelspec as kernel
from cmr_utils.runner import render
from cmr_utils.report import index as report
from cmr_utils.runner import run as R
from cmr_utils.fit.cache import fit_cached


@pytest.fixture
def umask():
    """Set the process umask for one test."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o640, 0o750)])
def test_atomic_writes_get_the_umask_modes_and_group_read(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    io.save_json(tmp_path / "a.json", {"x": 1})
    with io.atomic_dir(tmp_path / "entry") as tmp:
        (tmp / "X.txt").write_text("x")
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.rglob("*")}
    assert modes == {"a.json": file_mode, "entry": dir_mode, "X.txt": file_mode}


def full_disk(monkeypatch):
    """Every text or CSV write fills the disk halfway through."""
    def write_text(self, data, *args, **kwargs):
        with open(self, "w") as f:
            f.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, path, *a, **k: write_text(Path(path), "a,b\n1,2\n"))


def files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def notebook(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])


NEW = notebook("new")


def _csv(run_dir):
    io.save_csv(run_dir / "results.csv", fake_results(kinds=("title",), features=("generated",), dims=(50,)))


def _index(run_dir):
    _csv(run_dir)
    report.write_index(run_dir, [], {"n_bags": 3})


def _grid_index(run_dir):
    point = run_dir / "p"
    point.mkdir(exist_ok=True)
    _csv(point)
    report.write_grid_index(run_dir, [{"point": "p", "steps": [], "error": None}], {"p": {}})


def _html(run_dir):
    nbformat.write(NEW, run_dir / "01_extract.ipynb")
    render.to_html(run_dir / "01_extract.ipynb", run_dir / "01_extract.html", False)


def _kernel(run_dir):
    kernel.install(run_dir)


@pytest.mark.parametrize("write", [_csv, _index, _grid_index, _html, _kernel])
def test_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch, write):
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    (tmp_path / "01_extract.ipynb").write_text("{}")
    (tmp_path / "results.csv").write_text("medr\n3\n")
    (tmp_path / "index.html").write_text("<p>previous</p>")
    (tmp_path / "01_extract.html").write_text("<p>previous</p>")
    write(tmp_path)  # the previous files of every kind
    before = files(tmp_path)
    full_disk(monkeypatch)
    with pytest.raises(OSError) as e:
        write(tmp_path)
    assert e.value.errno == errno.ENOSPC
    assert files(tmp_path) == before  # nothing changed, no temporary file left


def test_executed_notebook_replaces_the_previous_only_when_saved_whole(tmp_path, monkeypatch):
    nbformat.write(notebook("previous"), tmp_path / "01_extract.ipynb")
    before = files(tmp_path)

    def cut_short(source, out, **kwargs):
        Path(out).write_text('{"cells": [{"cell_type": "mark')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(papermill, "execute_notebook", cut_short)
    assert "No space left on device" in kernel.execute("01_extract", {}, tmp_path)
    assert files(tmp_path) == before

    def failing_cell(source, out, **kwargs):
        nbformat.write(notebook("the error"), out)
        raise papermill.PapermillExecutionError(1, 1, "x", "ValueError", "boom", [])
    monkeypatch.setattr(papermill, "execute_notebook", failing_cell)
    assert kernel.execute("01_extract", {}, tmp_path) == "01_extract failed: ValueError: boom"
    assert [p.name for p in tmp_path.iterdir()] == ["01_extract.ipynb"]
    assert nbformat.read(tmp_path / "01_extract.ipynb", as_version=4).cells[0].source == "the error"


READER = """
import json
import sys
from pathlib import Path
import numpy as np
from cmr_utils.data import demo
from cmr_utils.features import store as features
from cmr_utils.fit.cache import fit_cached

cache, meta, expected = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
try:
    open(cache / "probe", "w")
    sys.exit("the cache is writable: this check would prove nothing")
except PermissionError:
    pass

def build(dest):
    raise AssertionError("a finished entry was built again")

assert str(features.cached(cache, meta, build)) == expected
X = np.random.default_rng(0).normal(size=(30, 3))
model, _ = fit_cached(cache, "x", "y", X, X[:, ::-1], model="ridge", n_components=2, shrinkage=0.5)
assert model.n_components_ == 2
assert (demo.ensure(cache, 20, 1) / "layer2.json").exists()
print("read", flush=True)
"""


def without_root_powers(cmd: list[str]) -> list[str]:
    """Run ``cmd`` bound by permission bits: root drops the capabilities that override them."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make permission bits apply")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", *cmd]


def test_a_read_only_cache_serves_finished_entries(tmp_path, umask):
    cache = tmp_path / "cache"
    meta = {"modality": "text", "probe": 1}
    X = np.random.default_rng(0).normal(size=(30, 3))
    entry = features.cached(cache, meta, lambda dest: features.store(
        dest, np.zeros((2, 3)), pd.DataFrame({"recipe_id": ["a", "b"], "image_id": ""}), [], meta))
    fit_cached(cache, "x", "y", X, X[:, ::-1], model="ridge", n_components=2, shrinkage=0.5)
    demo.ensure(cache, 20, 1)
    for p in [cache, *cache.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        out = subprocess.run(without_root_powers([sys.executable, "-c", READER, str(cache), json.dumps(meta), str(entry)]),
                             capture_output=True, text=True, timeout=300, cwd=R.ROOT)
    finally:
        for p in [cache, *cache.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert out.returncode == 0 and "read" in out.stdout, out.stderr[-3000:]


def test_an_os_error_at_the_command_line_is_one_line(tmp_path, monkeypatch, capsys):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/shared/cache/features/abc.lock")
    monkeypatch.setattr(R, "run", denied)
    assert cli.main(["run", str(tmp_path / "p.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("[cmr] error: ") and "abc.lock" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("idx", [[0, 0, 2], [3, 2], [5, 5], [], slice(None), slice(7, 90), [1, 2, 3, 4],
                                 [0, 200, 201, 202], [9, 9, 10, 12, 13]])
@pytest.mark.parametrize("dtype", [None, np.float64])
def test_npy_rows_reads_exactly_the_rows_asked(tmp_path, idx, dtype):
    """Repeated rows, gaps, reversed order: each output row is the file's row it names (runs are read whole)."""
    X = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    got = io.NpyRows(tmp_path / "X.npy", dtype)[idx]
    np.testing.assert_array_equal(got, X[idx].astype(dtype or np.float32))
    assert got.dtype == (dtype or np.float32)


def test_npy_rows_name_the_file_when_rows_are_out_of_range_or_missing(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((10, 3), np.float32))
    with pytest.raises(IndexError, match="X.npy"):
        io.NpyRows(tmp_path / "X.npy")[[3, 10]]
    rows = io.NpyRows(tmp_path / "X.npy")
    with open(tmp_path / "X.npy", "r+b") as f:
        f.truncate(rows.offset + 5 * 3 * 4)  # a copy cut short after 5 rows
    with pytest.raises(ValueError, match="truncated"):
        rows[0:8]


def test_npy_rows_refuse_a_fortran_ordered_file_naming_it(tmp_path):
    """Rows of a column-major file are not contiguous spans: refused (given.read loads such a file whole)."""
    np.save(tmp_path / "F.npy", np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3)))
    with pytest.raises(ValueError, match=r"F\.npy: expected a C-ordered 2-D array, got shape \(4, 3\)"):
        io.NpyRows(tmp_path / "F.npy")
    np.save(tmp_path / "C.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    np.testing.assert_array_equal(io.NpyRows(tmp_path / "C.npy")[[3, 1]], [[9, 10, 11], [3, 4, 5]])


def test_a_view_of_a_million_pairs_pickles_small(tmp_path):
    """Pairs repeat a recipe's text row for each of its photos and skip recipes without one."""
    np.save(tmp_path / "T.npy", np.arange(700_000, dtype=np.float32)[:, None])
    rng = np.random.default_rng(0)
    text_rows = np.repeat(np.arange(700_000), rng.integers(0, 4, 700_000))[:1_000_000]
    view = features.Rows([io.NpyRows(tmp_path / "T.npy")], [text_rows])
    data = pickle.dumps(view.take(slice(10, None)))
    assert len(data) < 8_000_000 / 20  # not 8 bytes a row
    back = pickle.loads(data)
    np.testing.assert_array_equal(back.rows[0], text_rows[10:])
    np.testing.assert_array_equal(back[5:9], view[15:19])
    assert pickle.loads(pickle.dumps(features.Rows([np.ones((3, 2))]).take([]))).shape == (0, 2)
