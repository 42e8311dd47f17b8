"""The shared space as a map: every test pair's photo and recipe in 2-D (t-SNE, one per text kind), coloured
by recipe groups that a cook can read (clusters named by their most distinctive title words)."""
from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from cmr_utils.progress import bar as progress_bar

MODALITIES = {"photo": "o", "recipe": "x"}
STOP_WORDS = set("and with the for from a an of in on to or my our your easy best recipe style quick simple "
                 "homemade made".split())


def recipe_groups(Z_txt: np.ndarray, titles: list[str], n_groups: int = 12, seed: int = 0) -> np.ndarray:
    """A group name per recipe that a cook can read: KMeans on the latent text vectors, each cluster named by
    two of the title words most over-represented in it (a pair no larger cluster took) and its size."""
    n_groups = max(1, min(n_groups, len(titles) // 8))
    labels = KMeans(n_groups, n_init=4, random_state=seed).fit_predict(Z_txt)
    words = [{w for w in re.findall(r"[a-z]+", t.lower()) if len(w) > 2 and w not in STOP_WORDS} for t in titles]
    overall, n = Counter(w for ws in words for w in ws), len(titles)
    names, taken = {}, set()
    for c, size in Counter(labels).most_common():
        here = Counter(w for i in np.flatnonzero(labels == c) for w in words[i])
        lift = {w: (m / size) * np.log((m / size) / (overall[w] / n)) for w, m in here.items()}
        best = sorted(lift, key=lambda w: (here[w] < 2, -lift[w], w))[:6]  # words of one title only last
        pair = next((p for p in itertools.combinations(best, 2) if p not in taken), (f"group {c + 1}",))
        taken.add(pair)
        names[c] = f"{' · '.join(pair)} ({size})"
    return np.array([names[c] for c in labels])


def tsne_2d(Z: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D openTSNE embedding, seeded, PCA-initialised; gradients FFT-accelerated from 10k points
    (openTSNE's "auto": Barnes-Hut below, where it is ~20x faster than FFT's fixed grid cost).

    One thread: openTSNE's threads (its approximate-neighbour index, its gradient sums) change the
    layout, which would then depend on the machine's cores (``tsne_layout`` runs the kinds side by side
    instead). Beyond ``LARGE`` points
    (all of Recipe1M's test pairs: ~100k) the neighbours are searched on the first 50 principal
    components and the optimisation runs half of openTSNE's default iterations (125 exaggerated +
    250), with its learning rate n / 12 that makes that enough.
    """
    from openTSNE import TSNE
    Z = np.asarray(Z, np.float64)
    large = len(Z) > LARGE
    if large and Z.shape[1] > 50:
        Z = PCA(50, random_state=seed).fit_transform(Z)
    tsne = TSNE(n_components=2, perplexity=min(30.0, (len(Z) - 1) / 3), initialization="pca",
                negative_gradient_method="auto", n_jobs=1, random_state=seed,
                **({"early_exaggeration_iter": 125, "n_iter": 250} if large else {}))
    return np.asarray(tsne.fit(Z))


LARGE = 20_000


def tsne_layout(galleries: dict, seed: int = 0, max_pairs: int | None = None) -> pd.DataFrame:
    """Every test pair's photo and recipe in 2-D, per text kind (one t-SNE each, a kind per core at a time),
    grouped by the first gallery's recipe clusters so colours mean the same in every panel; ``max_pairs``
    (seeded) caps the pairs."""
    first = next(iter(galleries.values()))
    n = len(first.index)
    pairs = np.arange(n) if not max_pairs or max_pairs >= n else \
        np.sort(np.random.default_rng(seed).choice(n, max_pairs, replace=False))
    info = first.index.iloc[pairs][["recipe_id", "title", "path"]].reset_index(drop=True)
    info["group"] = recipe_groups(first.recipes[pairs], list(info.title), seed=seed)
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:  # openTSNE's loops release the GIL
        maps = pool.map(lambda g: tsne_2d(np.vstack([g.photos[pairs], g.recipes[pairs]]), seed), galleries.values())
        xys = list(progress_bar(maps, total=len(galleries), desc=f"t-SNE of {len(pairs):,} pairs", unit="kind",
                                disable=len(pairs) <= LARGE))
    frames = [pd.concat([info] * 2, ignore_index=True).assign(
        kind=kind, space=g.label, modality=np.repeat(list(MODALITIES), len(pairs)),
        pair=np.tile(pairs, 2), x=xy[:, 0], y=xy[:, 1]) for (kind, g), xy in zip(galleries.items(), xys)]
    return pd.concat(frames, ignore_index=True)


def group_colours(layout: pd.DataFrame) -> dict[str, str]:
    """A colour per recipe group, largest group first (shared by the figure and the interactive page)."""
    groups = layout.drop_duplicates("pair").group.value_counts().index
    tab20 = sns.color_palette("tab20")
    palette = tab20[::2] + tab20[1::2]  # ten distinct hues first, then their light shades
    return {g: "#%02x%02x%02x" % tuple(int(255 * c) for c in palette[i]) for i, g in enumerate(groups)}


def tsne_panels(layout: pd.DataFrame):
    """One t-SNE panel per text kind, two per row: photos ● and recipes ×, coloured by recipe group."""
    kinds = list(dict.fromkeys(layout.kind))
    colours = group_colours(layout)
    cols = min(2, len(kinds))
    rows = -(-len(kinds) // cols)
    size = float(np.clip(20000 / len(layout[layout.kind == kinds[0]]), 3, 40))
    fig, axes = plt.subplots(rows, cols, figsize=(13, 13 / cols * rows * 0.95 + 1.2), layout="constrained",
                             squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        d = layout[layout.kind == kind]
        for modality, marker in MODALITIES.items():
            m = d[d.modality == modality]
            ax.scatter(m.x, m.y, c=m.group.map(colours), marker=marker, s=size, alpha=0.75,
                       linewidths=0.8 if marker == "x" else 0)
        ax.set_title(d.space.iloc[0], fontsize=11)
        ax.set(xticks=[], yticks=[])
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    handles = ([Line2D([], [], ls="", marker=m, color="dimgrey", label=name) for name, m in MODALITIES.items()]
               + [Patch(color=c, label=g) for g, c in colours.items()])
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9, frameon=False,
               title="recipe groups: clusters of the recipes' latent text vectors, named by their most distinctive "
                     "title words (recipes in the group)", title_fontsize=9)
    return fig
