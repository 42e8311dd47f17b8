"""``python -m cmr_utils VERB ...``: the package's one command (``cmr_utils.cli``)."""
import sys

from cmr_utils.cli import main

sys.exit(main())
