"""How fast the runner refuses a run it cannot do, against the cost of starting it at all, side by side.

    python benchmarks/early_stops.py [--repeat 3]

Each case runs ``python -m cmr_utils run ...`` in a fresh process (reports in a temporary folder) and
is timed from start to exit; the baseline is a process that only imports the runner, which every
command pays. The cases: a misspelt key in the parameters file, an input that does not exist (a
data folder), and a run folder another run holds (a process holding its lock). The claim (once
asserted by unit tests): each refusal costs little more than the import, never the run's minutes;
the busy folder in particular is refused at once, not waited for. Median of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cmr_utils.paths import ROOT

# the runner's command line with its reports folder moved to argv[1] (the CLI has no option for it)
CLI = """
import functools, runpy, sys
from cmr_utils.runner import run as R
R.run = functools.partial(R.run, reports_dir=sys.argv[1])
sys.argv = ["cmr_utils", *sys.argv[2:]]
runpy.run_module("cmr_utils", run_name="__main__", alter_sys=True)
"""
HOLD = """
import sys, time
from pathlib import Path
from cmr_utils.runner import run as R
claim = getattr(R, "claim", None) or R._claim  # the run lock (runner.run._claim before the house refactor)
with claim(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def timed(cmd: list[str], cwd: Path, env: dict, expect: int) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    if out.returncode != expect:
        raise SystemExit(f"{' '.join(cmd[3:])}: exit {out.returncode}, expected {expect}\n{out.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cli = [sys.executable, "-c", CLI, str(tmp / "reports"), "run"]
        (tmp / "typo.yaml").write_text("demo_recipes: 100\nmodles: [cca]\n")
        (tmp / "p.yaml").write_text(f"cache_dir: {tmp / 'cache'}\n")
        cases = {"import the runner only (baseline)": ([sys.executable, "-c", "import cmr_utils.runner.run"], 0),
                 "misspelt key": (cli + [str(tmp / "typo.yaml"), "--name", "typo"], 1),
                 "missing data folder": (cli + [str(ROOT / "params" / "demo.yaml"), "--set", "data_dir=/nope"], 1),
                 "busy run folder": (cli + [str(tmp / "p.yaml"), "--name", "same"], 1)}
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp / "reports" / "same")], env=env,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline() == "held\n"
            times = {name: statistics.median(timed(cmd, tmp, env, expect) for _ in range(args.repeat))
                     for name, (cmd, expect) in cases.items()}
        finally:
            holder.kill()
            holder.wait()
    base = times.pop("import the runner only (baseline)")
    print(f"python -m cmr_utils run, refused (median of {args.repeat}, fresh process each):")
    print(f"  {'import the runner only (baseline)':36s} {base:6.2f} s")
    for name, seconds in times.items():
        print(f"  {name:36s} {seconds:6.2f} s ({seconds / base:.1f}x the import)")


if __name__ == "__main__":
    main()
