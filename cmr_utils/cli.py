"""The one command line, ``python -m cmr_utils VERB``: one parser, one error tail, each verb a plain function call.

    python -m cmr_utils run PARAMS.yaml [--set key=value ...] [--name RUN] [--show-code] [-j N] [--share]
    python -m cmr_utils search RUN [QUERY...] [--interactive] [--k 10] [--kind TEXT_KIND] [--to recipes|photos]
    python -m cmr_utils share reports/RUN
    python -m cmr_utils compare RUN_A RUN_B [RUN_C ...] [--rows N] [--reports DIR]
    python -m cmr_utils synthetic [--scale 1] [--seed 0] [--cache-dir cache]

A verb imports its module only when it runs, so ``--help`` and a mistyped flag answer at once,
without loading torch. An error the user can act on (a parameter, a missing or locked file) is
one line on stderr and exit status 1; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from cmr_utils.paths import REPORTS

ERRORS = (OSError, ValueError, RuntimeError)  # ParameterError is a ValueError


def run(args) -> None:
    from cmr_utils.runner import run as runner
    runner.run(args.params, args.overrides, args.name, args.show_code, Path(args.reports), args.jobs, args.share)


def search(args) -> int:
    from cmr_utils.report import search as S
    if not (args.queries or args.interactive):
        args.parser.error("give a QUERY, or --interactive")
    return 0 if S.session(args.run, args.queries, args.k, args.kind, args.to, args.interactive) else 1


def share(args) -> None:
    from cmr_utils.report.share import pack
    from cmr_utils.runner.run import claim  # a run writing the folder now would be packed half-written
    run_dir = Path(args.run_dir).resolve()
    with claim(run_dir) if run_dir.is_dir() else contextlib.nullcontext():
        print(f"[cmr] shared: {pack(run_dir)}", flush=True)


def compare(args) -> None:
    from cmr_utils.report import compare as C
    if len(args.runs) < 2:
        args.parser.error("give at least two runs")
    comparisons = C.against_first(args.runs, Path(args.reports))
    for c in comparisons:
        print(C.text(c, args.rows))
    print(f"✱ {C.RULE}")
    print(f"[cmr] page: {C.write_page(comparisons, Path(args.reports))}", flush=True)


def synthetic(args) -> None:
    from cmr_utils.data.synthetic import ensure
    print(ensure(args.cache_dir, args.scale, args.seed))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m cmr_utils", description=__doc__.split("\n")[0])
    verbs = ap.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, call, about: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=about, description=about)
        p.set_defaults(call=call, parser=p)
        return p

    p = verb("run", run, "Run the four notebooks headlessly into reports/<run>/.")
    p.add_argument("params", help="YAML file of parameters, e.g. params/demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter (value parsed as YAML); repeatable")
    p.add_argument("--name", help="run name: the folder under reports/ (default: the params file's stem)")
    p.add_argument("--show-code", action="store_true", help="keep code cells in the HTML reports")
    p.add_argument("-j", "--jobs", type=int, default=1, help="grid points run in parallel (default 1)")
    p.add_argument("--share", action="store_true", help="also write reports/<run>.zip, readable offline")
    p.add_argument("--reports", default=str(REPORTS), help="where the run folder and the runs page go (default reports/)")

    p = verb("search", search, "Try a run's shared space: the nearest recipes to a photo, or photos to a text.")
    p.add_argument("run", help="run folder, or its name under reports/")
    p.add_argument("queries", nargs="*", metavar="QUERY", help="a photo file or a text")
    p.add_argument("--k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--kind", help="text kind whose best configuration on val to use (default: the chosen one)")
    p.add_argument("--to", choices=["recipes", "photos"], help="what to find (default: the other modality)")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="then read one query a line until an empty line or end of input: the encoders load once")

    p = verb("share", share, "Pack a run into reports/<run>.zip with everything its pages link to, readable offline.")
    p.add_argument("run_dir", help="a run folder, e.g. reports/demo")

    p = verb("compare", compare, "Compare runs: the parameters, code and data that differ, and whether their numbers do.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders or names under reports/ (RUN/point for a grid point); each is compared with the first")
    p.add_argument("--rows", type=int, default=20, help="test rows printed per comparison (0: all; default 20)")
    p.add_argument("--reports", default=str(REPORTS), help="where run names are looked up and the page is written")

    p = verb("synthetic", synthetic, "Generate (or find) the synthetic Recipe1M-size corpus in the cache; print its folder.")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of Recipe1M's recipe counts (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default="cache")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's), run the verb; the exit status: 1 after an error, else the verb's or 0."""
    args = parser().parse_args(argv)
    try:
        return args.call(args) or 0
    except ERRORS as e:  # one line: a traceback adds nothing here
        print(f"[cmr] error: {e}", file=sys.stderr)
        return 1
