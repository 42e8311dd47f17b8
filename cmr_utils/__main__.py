"""``python -m cmr_utils VERB ...``: compare runs, or the run, search and share commands by one name.

    python -m cmr_utils compare RUN_A RUN_B [...]    # cmr_utils.report.compare
    python -m cmr_utils run PARAMS.yaml [...]        # cmr_utils.runner.run
    python -m cmr_utils search RUN QUERY [...]       # cmr_utils.report.search
    python -m cmr_utils share reports/RUN            # cmr_utils.report.share
"""
import importlib
import sys

VERBS = {"compare": "report.compare", "run": "runner.run", "search": "report.search", "share": "report.share",
         "synthetic": "data.synthetic"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in VERBS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return importlib.import_module(f"cmr_utils.{VERBS[argv[0]]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
