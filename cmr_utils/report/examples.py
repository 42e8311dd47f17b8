"""Notebook 04's "try it" sections: a photo searched as a new query, and vector arithmetic in the shared space.

Both need encoders for new queries; a run whose features were given has none, and these say so
instead, so the notebook only calls them.
"""
from __future__ import annotations

from IPython.display import display

from cmr_utils.report import plots
from cmr_utils.report.search import Gallery
from cmr_utils.run_dir import RunDir


def photo_search(run: RunDir, gallery: Gallery, photo: str, k: int = 5) -> None:
    """Show ``photo`` (a file) searched as a new query: its top ``k`` recipes in ``gallery``."""
    if not run.encodes_queries:
        print("given image features: no image encoder to embed a new photo")
        return
    print(f"query: {run.shown_path(photo)}")
    display(gallery.search([photo], k)[0])


def arithmetic(run: RunDir, galleries: dict[str, Gallery], swaps) -> None:
    """``plots.arithmetic_examples``, or why there are none."""
    if not run.encodes_queries:
        print("given text features: no encoder to embed free words, so no arithmetic")
    elif plots.arithmetic_examples(galleries, swaps=swaps) is None:
        print(f"no test recipe title contains any of {[a for a, _ in swaps]}")
