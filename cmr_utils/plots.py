"""Figures and tables for the report: recall tables, medR against latent dimension, t-SNE, examples."""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.manifold import TSNE

from .data import Recipe1M
from .retrieval import normalize

# dish group: title words that name it; earlier groups win ("Shrimp Soup" is a soup)
DISH_GROUPS = {
    "soup": ("soup", "bisque", "chowder", "broth"), "stew/curry": ("stew", "curry", "chili"),
    "salad": ("salad", "slaw"), "cake": ("cake", "torte", "cupcake", "cheesecake"),
    "pie/tart": ("pie", "tart", "galette"), "pizza": ("pizza", "flatbread"),
    "pasta": ("pasta", "linguine", "spaghetti", "noodles", "lasagna"), "drink": ("smoothie", "shake", "cocktail"),
    "skewers": ("skewers", "kebabs", "kebab"), "bread": ("bread", "muffin", "muffins", "biscuits", "scones"),
    "cookie": ("cookie", "cookies", "brownies", "bars"), "sandwich": ("sandwich", "burger", "tacos"),
    "sauce": ("sauce", "dressing", "salsa", "dip"), "chicken": ("chicken",), "beef/pork": ("beef", "pork", "lamb"),
    "fish": ("fish", "salmon", "shrimp", "tuna", "cod"),
}


def dish_keyword(title: str) -> str:
    """A coarse dish group from a title (first matching group, else 'other'), for colouring plots."""
    words = set(re.findall(r"[a-z]+", title.lower()))
    return next((group for group, names in DISH_GROUPS.items() if words & set(names)), "other")


def best_per_kind(results: pd.DataFrame, direction: str = "im2recipe") -> pd.DataFrame:
    """For each text kind, the configuration with the lowest val medR (then highest R@10)."""
    val = results[(results.split == "val") & (results.direction == direction)]
    val = val[val.protocol == val.protocol.iloc[0]]
    return (val.sort_values(["medr", "r10"], ascending=[True, False])
            .groupby("text_kind", sort=False).head(1).set_index("text_kind"))


def recall_table(results: pd.DataFrame, split: str = "test", direction: str = "im2recipe") -> pd.DataFrame:
    """Paper-style table: rows text kind × latent dim, columns protocol × (medR, R@1, R@5, R@10)."""
    df = results[(results.split == split) & (results.direction == direction)]
    table = df.pivot_table(index=["model", "score", "text_kind", "latent_dim"], columns="protocol",
                           values=["medr", "r1", "r5", "r10"], aggfunc="first")
    return table.swaplevel(0, 1, axis=1).sort_index(axis=1, level=0, sort_remaining=False).round(1)


def medr_vs_dim(results: pd.DataFrame, split: str = "test"):
    """medR against latent dimension, one line per text kind, one panel per direction and model."""
    df = results[results.split == split]
    df = df[df.protocol == df.protocol.iloc[0]]
    g = sns.relplot(data=df, x="latent_dim", y="medr", hue="text_kind", style="score", col="direction",
                    row="model", kind="line", marker="o", height=3.2, aspect=1.3)
    g.set(xscale="log", yscale="log")
    g.set_axis_labels("latent dimension", "median rank (lower is better)")
    return g.figure


def recall_by_kind(results: pd.DataFrame, split: str = "test"):
    """R@1/5/10 of each text kind's best configuration (chosen on val), both directions."""
    keys = ["model", "latent_dim", "score", "shrinkage"]
    df = results[results.split == split]
    df = df[df.protocol == df.protocol.iloc[0]]
    rows = []
    for kind, cfg in best_per_kind(results).iterrows():
        sel = df[(df.text_kind == kind) & (df[keys] == cfg[keys]).all(axis=1)]
        rows += [{"text_kind": kind, "direction": r.direction, "K": f"R@{k}", "recall": r[f"r{k}"]}
                 for _, r in sel.iterrows() for k in (1, 5, 10)]
    g = sns.catplot(data=pd.DataFrame(rows), x="text_kind", y="recall", hue="K", col="direction", kind="bar",
                    height=3.2, aspect=1.3)
    g.set_axis_labels("text kind", "recall (%)")
    return g.figure


def tsne(Z_img: np.ndarray, Z_txt: np.ndarray, labels: list[str], score: str, corrs, seed: int = 0, ax=None):
    """Images and texts of the same pairs embedded together by t-SNE, coloured by ``labels``."""
    Z = np.vstack([normalize(Z_img, score, corrs), normalize(Z_txt, score, corrs)])
    xy = TSNE(n_components=2, perplexity=min(30, max(5, len(Z) // 10)), init="pca", random_state=seed).fit_transform(Z)
    n = len(Z_img)
    ax = ax or plt.gca()
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "group": list(labels) * 2,
                          "modality": ["image"] * n + ["text"] * n})
    top = frame.group.value_counts().index[:10]
    frame.loc[~frame.group.isin(top), "group"] = "other"
    sns.scatterplot(data=frame, x="x", y="y", hue="group", style="modality", s=14, alpha=0.7, ax=ax)
    ax.set(xticks=[], yticks=[], xlabel="", ylabel="")
    ax.legend(fontsize=7, markerscale=0.8, loc="best")
    return ax


def retrieval_examples(ds: Recipe1M, index: pd.DataFrame, Z_img, Z_txt, score, corrs, queries, k: int = 5):
    """Figure: each query photo beside the titles of its top-k recipes (✓ marks the true one)."""
    from .encoders import load_image
    Qi, Gt = normalize(Z_img, score, corrs), normalize(Z_txt, score, corrs)
    fig, axes = plt.subplots(len(queries), 2, figsize=(9, 2.2 * len(queries)),
                             gridspec_kw={"width_ratios": [1, 3]}, squeeze=False)
    for row, q in enumerate(queries):
        rid, iid = index.recipe_id[q], index.image_id[q]
        axes[row, 0].imshow(load_image(ds.image_path(ds.recipes[rid].partition, iid)))
        axes[row, 0].axis("off")
        top = np.argsort(-(Gt @ Qi[q]))[:k]
        lines = [f"{i + 1}. {ds.recipes[index.recipe_id[t]].title[:70]}{'  ✓' if t == q else ''}"
                 for i, t in enumerate(top)]
        axes[row, 1].text(0, 0.5, f"true: {ds.recipes[rid].title[:70]}\n" + "\n".join(lines), va="center",
                          fontsize=9, family="monospace")
        axes[row, 1].axis("off")
    fig.tight_layout()
    return fig
