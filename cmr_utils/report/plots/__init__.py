"""The report's figures, by what they show: the results (``results``), the space as a t-SNE map (``tsne``) and
retrieval as photo grids (``photos``); the notebooks and pages call them as ``plots.NAME``."""
from cmr_utils.report.plots.photos import arithmetic_examples, photos_for_recipe, retrieval_examples
from cmr_utils.report.plots.results import PAPER_LABEL, medr_vs_dim, models_compared, paper_vs_chosen, recall_by_kind
from cmr_utils.report.plots.tsne import group_colours, recipe_groups, tsne_layout, tsne_panels

__all__ = ["PAPER_LABEL", "arithmetic_examples", "group_colours", "medr_vs_dim", "models_compared", "paper_vs_chosen",
           "photos_for_recipe", "recall_by_kind", "recipe_groups", "retrieval_examples", "tsne_layout", "tsne_panels"]
