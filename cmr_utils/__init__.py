"""cmr: cross-modal retrieval between food photos and recipe text with CCA; the folders are the pipeline (README, Layout)."""
