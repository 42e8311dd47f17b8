"""What several test modules share that is not a fixture: stand-in encoders, given-feature writers, fake results
and the demo runs' parameters. Tests import from here, never from each other (fixtures live in conftest.py)."""
import itertools
import pickle
import zlib

import h5py
import numpy as np
import pandas as pd

from cmr_utils.data.recipe1m import SPLITS
from cmr_utils.evaluate import results as R

# the runner's --set overrides of the small demo runs
SMALL = ["demo_recipes=160", "text_kinds=[title, concat]", "models=[cca, ridge]", "latent_dims=[2, 16]",
         "scores=[correlation]", "bag_sizes=[40]", "n_bags=3", "tsne_points=60", "n_examples=2"]
TINY = ["demo_recipes=160", "text_kinds=[title]", "models=[ridge]", "latent_dims=[4]", "scores=[cosine]",
        "bag_sizes=[40]", "n_bags=2", "tsne_points=60", "n_examples=2"]
VIZ_KINDS = ["title", "instructions"]  # the text kinds of the demo run the report tests read (conftest.demo_run)


class HashEncoder:
    """Deterministic stand-in encoder that counts what it encodes and can fail mid-way."""

    dim = 4
    config = {"name": "hash"}

    def __init__(self, fail_after=None):
        self.calls, self.seen, self.fail_after = 0, 0, fail_after

    def _vec(self, s):
        return np.frombuffer(str(s).encode().ljust(16, b"_")[:16], dtype=np.uint8).reshape(4, 4).sum(0)

    def _tick(self, n):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.seen += n

    def encode(self, items, progress=True):
        self._tick(len(items))
        if items and not isinstance(items[0], str):  # image paths
            return np.array([self._vec(p.name) for p in items], np.float32), \
                {i: "empty file" for i, p in enumerate(items) if p.stat().st_size == 0}
        return np.array([self._vec(t) for t in items], np.float32).reshape(len(items), -1)


class NoisyHash(HashEncoder):
    """Hash vectors with a little seeded noise, so CCA has full-rank views to fit."""

    dim = 8

    def _vec(self, s):
        base = super()._vec(s).astype(np.float64)
        return np.concatenate([base, np.random.default_rng(int(base.sum())).normal(size=4)])


def vec(s, dim=6):
    """A given feature vector determined by the string ``s``."""
    return np.random.default_rng(zlib.crc32(s.encode())).normal(size=dim).astype(np.float32)


def write(path, ids, X):
    """Given features ``X`` (one row per id) in the format named by ``path``'s extension; returns ``path``."""
    ext = path.suffix
    if ext == ".npz":
        np.savez(path, ids=np.array(ids), X=X)
    elif ext == ".npy":
        np.save(path, X)
        path.with_suffix(".ids.txt").write_text("\n".join(ids))
    elif ext == ".pkl":
        path.write_bytes(pickle.dumps(dict(zip(ids, X))))
    elif ext == ".h5":
        with h5py.File(path, "w") as f:
            f["ids"] = np.array(ids, dtype="S")
            f["embeddings"] = X
    return path


def make_given(ds, folder, kinds=("title",), by="image", drop=()):
    """A given-features folder for every split of ``ds``: images by image (or recipe) id, texts by recipe id."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        recipes = ds.split(split)
        if by == "image":
            ids = [im for r in recipes for im in r.images]
        else:
            ids = [r.id for r in recipes]
        ids = [i for i in ids if i not in drop]
        write(folder / f"image_{split}.npz", ids, np.stack([vec(i) for i in ids]))
        for kind in kinds:
            rids = [r.id for r in recipes if r.id not in drop]
            write(folder / f"text_{kind}_{split}.pkl", rids, np.stack([vec(r + kind, 4) for r in rids]))


KINDS = ("title", "ingredients", "instructions", "all")
STEPS = [{"notebook": nb, "seconds": 1.0, "ok": True, "state": "ok"}
         for nb in ("01_extract", "02_fit", "03_evaluate", "04_visualize")]


def best_on_val(df: pd.DataFrame) -> pd.Series:
    """The row a reader would choose by hand: val, image→recipe, smallest bag; lowest medR, then highest R@10,
    then the first listed (written out here rather than asking the code under test)."""
    val = df[(df.split == "val") & (df.direction == "im2recipe")]
    val = val[val.bag_size == val.bag_size.min()]
    return val.loc[min(val.index, key=lambda i: (val.at[i, "medr"], -val.at[i, "r10"]))]


def fake_results(kinds=KINDS, features=("generated", "given"), dims=(10, 50, 100, 768), test_pairs=12000,
                 val_pairs=1500, bags=(1000, 10000), seed=0) -> pd.DataFrame:
    """results.csv as evaluation.evaluate writes it: ridge with cosine at dim 100 is best, recipe→image a bit worse."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind, feat, (model, shrink), dim, score in itertools.product(
            kinds, features, [("cca", 0.0), ("ridge", 0.5)], dims, ["correlation", "cosine"]):
        for split, n in (("val", val_pairs), ("test", test_pairs)):
            sizes = {("full", n) if b >= n else (f"{b // 1000}k", b) for b in bags}
            for (label, bag), direction in itertools.product(sorted(sizes), ("im2recipe", "recipe2im")):
                factor = ((0.8 if model == "ridge" else 1) * (0.9 if score == "cosine" else 1)
                          * (1 + 0.3 * abs(np.log(dim / 100))) * (1.1 if direction == "recipe2im" else 1))
                medr = round(float(bag / 50 * factor * rng.uniform(0.95, 1.05)), 1)
                r1 = 100 / medr / 4
                row = {"text_kind": kind, "features": feat, "image_encoder": "resnet50", "text_encoder": "bert",
                       "model": model, "shrinkage": shrink, "latent_dim": dim, "n_components": dim, "score": score,
                       "fit_on": "train", "split": split, "protocol": label, "n_pairs": n, "direction": direction,
                       "bag_size": bag, "n_bags": 1 if label == "full" else 10, "medr": medr,
                       "medr_std": round(medr / 10, 2)}
                for k, v in (("r1", r1), ("r5", 2.5 * r1), ("r10", 4 * r1)):
                    row |= {k: round(min(v, 100), 2), f"{k}_std": 0.5}
                rows.append(row)
    df = pd.DataFrame(rows)
    df["chosen"] = (df[R.CONFIG_COLUMNS] == best_on_val(df)[R.CONFIG_COLUMNS]).all(axis=1)
    refit = df[df.chosen & (df.split == "test")].assign(fit_on="train+val", medr=lambda d: d.medr - 0.5)
    return pd.concat([df, refit], ignore_index=True)
