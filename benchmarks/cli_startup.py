"""Start-up of ``python -m cmr_utils run --help`` against the runner of an older checkout, measured in one run.

    python benchmarks/cli_startup.py [--before /work/before] [--old-module cmr_utils.run] [--n 7]

Each command runs ``n`` times, alternating, in a fresh interpreter (this one's); the medians of the
wall times are printed with their ratio, and whether each imported torch (``-X importtime``). The
new command line imports a verb's module only when the verb runs, so its help needs no torch.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def command(root: Path, module_args: list[str]) -> tuple[list[str], dict]:
    """The command and its environment; it runs in ``root`` (``-m`` puts the working folder first on the path)."""
    return [sys.executable, "-m", *module_args, "--help"], {**os.environ, "PYTHONPATH": str(root), "PWD": str(root)}


def seconds(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=env["PWD"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def imports_torch(cmd: list[str], env: dict) -> bool:
    done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, cwd=env["PWD"], check=True,
                          capture_output=True, text=True)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in done.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default="/work/before", help="checkout of the older commit (default /work/before)")
    ap.add_argument("--old-module", default="cmr_utils.run", help="its runner module (default cmr_utils.run)")
    ap.add_argument("--n", type=int, default=7, help="runs of each command (default 7)")
    args = ap.parse_args()
    commands = {"before": command(Path(args.before), [args.old_module]),
                "now": command(HERE, ["cmr_utils", "run"])}
    for cmd, env in commands.values():  # warm the file cache and byte-code of both
        seconds(cmd, env)
    times = {name: [] for name in commands}
    for _ in range(args.n):
        for name, (cmd, env) in commands.items():
            times[name].append(seconds(cmd, env))
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, (cmd, env) in commands.items():
        print(f"{name:>6}: {median[name]:.3f} s median of {args.n} (min {min(times[name]):.3f}), "
              f"torch imported: {'yes' if imports_torch(cmd, env) else 'no'}   "
              f"PYTHONPATH={env['PYTHONPATH']} {' '.join(cmd[1:])}")
    print(f" ratio: before / now = {median['before'] / median['now']:.1f}x")


if __name__ == "__main__":
    main()
