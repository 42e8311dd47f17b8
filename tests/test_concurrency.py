"""Two runs on one report folder: the second stops at once, the first is never disturbed."""
import subprocess
import sys
import time

import pytest
from helpers import TINY

from cmr_utils.report import index as report
from cmr_utils.runner import run as R

HOLD = """
import sys, time
from pathlib import Path
from cmr_utils.runner import run as R
with R.claim(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("grid", [False, True])
def test_a_second_run_on_a_busy_folder_stops_at_once(tmp_path, grid):
    """Refused, not queued: the holder keeps the folder for two minutes, so a run that waited for it would
    end up running instead of raising. (How fast the refusal comes: benchmarks/early_stops.py.)"""
    params = tmp_path / "p.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\n" + ("grid:\n  n_bags: [2, 3]\n" if grid else ""))
    run_dir = tmp_path / "reports" / "same"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = sorted(run_dir.rglob("*"))
        with pytest.raises(RuntimeError, match=rf"same is in use by another run \(pid {holder.pid}\); "
                                               "wait for it or pick another --name"):
            R.run(params, name="same", reports_dir=tmp_path / "reports")
        assert holder.poll() is None  # refused while the folder was held
        assert sorted(run_dir.rglob("*")) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_real_concurrent_runs_on_one_report_folder(tmp_path, cli):
    params = tmp_path / "p.yaml"
    params.write_text(f"cache_dir: {tmp_path / 'cache'}\n")
    name = "concurrent"
    run_dir = tmp_path / "reports" / name
    cmd = cli("run", params, "--name", name, *(a for s in TINY for a in ("--set", s)))
    first = subprocess.Popen(cmd, cwd=tmp_path, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not ((run_dir / ".lock").exists() and (run_dir / ".lock").read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.time() < deadline, first.stdout.read()
            time.sleep(0.2)
        second = subprocess.run(cmd, cwd=tmp_path, env=cli.env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert second.stderr == (f"[cmr] error: reports/{name} is in use by another run (pid {first.pid}); "
                                 "wait for it or pick another --name\n")
        assert first.poll() is None, "the first run ended before the second tried: nothing was tested"
        out, _ = first.communicate(timeout=1200)
        assert first.returncode == 0, out
        index = (run_dir / "index.html").read_text()
        assert "<b>failed</b>" not in index and "failed, " not in index and "results.csv" in index
        assert all((run_dir / f"{nb}.html").exists() and (run_dir / f"{nb}.ipynb").exists() for nb in R.NOTEBOOKS)
        assert not [p for p in run_dir.iterdir() if p.name.startswith(".") and p.name not in (".lock", ".stamps", ".jupyter", report.COMPLETE)]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
