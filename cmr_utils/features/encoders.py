"""The encoders under their old import path, for code not yet pointed at ``text``, ``images``,
``weights`` and ``data.photos`` (tests of other areas, ``benchmarks/dask_overhead.py``)."""
from cmr_utils.data.photos import load_image
from cmr_utils.features.images import EfficientNetLite0, ImageEncoder
from cmr_utils.features.text import TextEncoder
from cmr_utils.features.weights import TEXT_MODELS
from cmr_utils.features.weights import loaded as _loaded

__all__ = ["EfficientNetLite0", "ImageEncoder", "TEXT_MODELS", "TextEncoder", "_loaded", "load_image"]
