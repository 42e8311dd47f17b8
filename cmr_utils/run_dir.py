"""A run folder as one object, ``RunDir``: what the stages hand each other, each file read once.

Stages talk only through files in a run folder (``features.json``, ``models.json``, ``results.csv``);
a ``RunDir`` reads each when first asked and keeps it, so a stage passes the object along instead
of building paths and re-reading the manifest, and every notebook is rerunnable alone.
"""
from __future__ import annotations

import json
import os
import shutil
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from cmr_utils import paths
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.features import lexical
from cmr_utils.features.store import Features, concat, paired
from cmr_utils.io import save_csv

CONCAT_PARTS = ("title", "ingredients", "instructions")  # concat's default parts
CONFIG_COLUMNS = ["text_kind", "features", "image_encoder", "text_encoder", "model", "shrinkage",
                  "latent_dim", "n_components", "score"]  # the columns of results.csv that name a configuration
QUERY_SET = "query set (evaluation)"  # skipped.csv's stage for what evaluation's shared query sets drop
OUTPUTS = {"01_extract": ("features.json",), "02_fit": ("models.json",),
           "03_evaluate": ("results.csv", "dropped.csv")}  # what each notebook hands to the next ones


def cache_folder(cache_dir=None) -> Path:
    """The cache a notebook uses: ``cache_dir``, or the project's ``cache/`` (the runner's), from any folder."""
    return Path(cache_dir) if cache_dir else paths.CACHE


def run_folder(notebook: str, params: dict) -> Path:
    """The folder a notebook run by hand reads and writes: ``params['run_dir']``, or the project's
    ``reports/interactive`` from any working directory.

    In that default folder, a notebook whose upstream outputs (``OUTPUTS``) are not there takes them from
    the latest runner output under ``reports/`` made with this notebook's parameters (``params``, e.g.
    the notebook's ``globals()``), so ``02_fit`` opened after ``make report`` goes on from the runner's
    features; it says which.
    """
    if params.get("run_dir"):
        return Path(params["run_dir"])
    run_dir = paths.REPORTS / "interactive"
    need = [f for nb, files in OUTPUTS.items() if nb < notebook for f in files]
    if all((run_dir / f).exists() for f in need):
        return run_dir
    from cmr_utils.runner.notebooks import declared
    defaults = declared()[notebook]
    mine = {k: params.get(k, v) for k, v in defaults.items() if k not in ("run_dir", "cache_dir", "cluster")}
    cache = str(cache_folder(params.get("cache_dir")).resolve())
    runs = []
    for saved in run_dir.parent.glob("**/params.yaml"):
        ran = yaml.safe_load(saved.read_text()) or {}
        if saved.parent != run_dir and all((saved.parent / f).exists() for f in need) and \
                all(ran.get(k, defaults[k]) == v for k, v in mine.items()) and ran.get("cache_dir") in (None, cache):
            runs.append(saved.parent)
    if runs:
        latest = max(runs, key=lambda r: (r / need[-1]).stat().st_mtime)
        run_dir.mkdir(parents=True, exist_ok=True)
        for f in need:
            shutil.copy2(latest / f, run_dir / f)
        print(f"{', '.join(need)}: from {latest.relative_to(paths.ROOT)}, the latest runner output with these parameters")
    return run_dir


def read_skipped(run_dir) -> pd.DataFrame:
    """``skipped.csv`` (stage, split, id, reason): what extraction and evaluation left out and why, ids as written."""
    return pd.read_csv(Path(run_dir) / "skipped.csv", dtype=str, keep_default_na=False)


def as_run(run_dir) -> RunDir:
    """``run_dir`` as a ``RunDir``: itself if it is one (what it has read stays read), else a new one."""
    return run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)


class RunDir(os.PathLike):
    """One run folder. Its files are read when first asked for and kept (treat what it returns as read-only);
    ``save_csv`` writes one and forgets what was read of it. A path-like: ``Path(run)`` is its folder."""

    def __init__(self, path):
        self.path, self._read, self._query_sets = Path(path), {}, {}

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def _file(self, name: str, read):
        if name not in self._read:
            path = self.path / name
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: run the notebook that writes it first "
                                        "(01_extract -> features.json, 02_fit -> models.json, 03_evaluate -> "
                                        "results.csv).")
            self._read[name] = read(path)
        return self._read[name]

    def save_csv(self, name: str, df: pd.DataFrame) -> None:
        """Write ``name`` (atomically); the next read of it reads the new file."""
        save_csv(self.path / name, df)
        self._read.pop(name, None)

    @property
    def manifest(self) -> dict:
        """``features.json``: the data, the encoders and every split's feature entries."""
        return self._file("features.json", lambda p: json.loads(p.read_text()))

    @property
    def models(self) -> list[dict]:
        """``models.json``: one entry per fitted configuration (text kind, model, shrinkage, latent dim, path)."""
        return self._file("models.json", lambda p: json.loads(p.read_text()))

    @property
    def cache(self) -> Path:
        """The cache the run's features are in (converted encoders too): where a query's encoder is rebuilt."""
        return Path(self.manifest["image"]["train"]).parents[1]

    @property
    def params(self) -> dict:
        """``params.yaml``: the parameters the runner ran with."""
        return self._file("params.yaml", lambda p: yaml.safe_load(p.read_text()) or {})

    @property
    def results(self) -> pd.DataFrame:
        """``results.csv`` with its protocol labels kept as text ('1k', '10k', 'full')."""
        return self._file("results.csv", lambda p: pd.read_csv(p, dtype={"protocol": str}))

    @property
    def dropped(self) -> pd.DataFrame:
        """``dropped.csv`` (split, recipe_id, reason): recipes with a photo left out of the shared query sets."""
        return self._file("dropped.csv", lambda p: pd.read_csv(p, dtype=str))

    @property
    def skipped(self) -> pd.DataFrame:
        """``skipped.csv`` (``read_skipped``)."""
        return self._file("skipped.csv", lambda _: read_skipped(self.path))

    @cached_property
    def dataset(self) -> Recipe1M:
        """The run's recipes, read as extraction read them (a synthetic corpus has no photo files)."""
        data = self.manifest["data"]
        return Recipe1M(data["root"], data["ingredients"], need_files=data["photos"])

    @property
    def chosen(self) -> dict:
        """The chosen configuration (results.csv's ``chosen`` rows): {column: value} of ``CONFIG_COLUMNS``."""
        row = self.results[self.results.chosen].iloc[0]
        return {c: row[c].item() if hasattr(row[c], "item") else row[c] for c in CONFIG_COLUMNS}

    @property
    def encodes_queries(self) -> bool:
        """Whether a new photo or text can be embedded like the run's features (given features come without
        encoders)."""
        return self.manifest["source"] != "given"

    @property
    def concat_kinds(self) -> list[str]:
        """The text kinds ``concat`` stacks in a run, in order (a features.json from before they were a
        parameter: the default three)."""
        return list(self.manifest.get("concat_parts", CONCAT_PARTS))

    def labels(self, kind: str) -> dict:
        """The columns of results.csv that say where a text kind's features came from; its ``text_encoder``: the
        neural encoder, ``lexical``, or both for a ``concat`` that stacks them."""
        parts, encoders = self.concat_kinds if kind == "concat" else [kind], self.manifest["encoders"]
        text = [encoders["text"]["name"]] * any(p != lexical.KIND for p in parts) + \
            [lexical.KIND] * (lexical.KIND in parts)
        return {"features": self.manifest["source"], "image_encoder": encoders["image"]["name"],
                "text_encoder": " + ".join(text)}

    def lexical_block(self, kind: str) -> tuple[slice, dict] | None:
        """The columns of a text kind's features that the lexical view fills, and its encoder settings; None
        when it has none."""
        entries = self.manifest["text"][kind]["train"]
        start = 0
        for path in entries if isinstance(entries, list) else [entries]:
            feats = Features.load(path)
            if feats.meta.get("text_kind") == lexical.KIND:
                return slice(start, start + feats.X.shape[1]), feats.meta["encoder"]
            start += feats.X.shape[1]
        return None

    def pairs(self, kind: str, split: str, recipes=None):
        """(image features, text features, index) of one text kind and split, row-aligned.

        ``recipes`` (recipe ids) restricts the pairs to those recipes, in image-entry order.
        """
        entry = self.manifest["text"][kind][split]
        text = concat([Features.load(p) for p in entry]) if isinstance(entry, list) else Features.load(entry)
        return paired(Features.load(self.manifest["image"][split]), text, recipes)

    def query_set(self, split: str) -> tuple[list[str], pd.DataFrame]:
        """(recipe ids, dropped) of the pairs every requested text kind is evaluated on in ``split``.

        A recipe counts only if it has an image and the text of every requested kind (and of every
        part of ``concat``), so all kinds, models and scores are ranked on the same recipes and the
        same seeded bags. ``dropped`` (split, recipe_id, reason) lists the recipes with an image
        that lack some kind's text.
        """
        if split in self._query_sets:
            return self._query_sets[split]
        text, parts = self.manifest["text"], self.concat_kinds
        kinds = list(dict.fromkeys(k for kind in text for k in (parts if kind == "concat" else [kind])))
        have = {}
        for kind in kinds:
            entry = text[kind][split] if kind in text else text["concat"][split][parts.index(kind)]
            have[kind] = set(Features.load(entry).index.recipe_id)
        keep, dropped = [], []
        for rid in dict.fromkeys(Features.load(self.manifest["image"][split]).index.recipe_id):
            missing = [k for k in kinds if rid not in have[k]]
            if missing:
                dropped.append((split, rid, "no " + " / ".join(missing) + " text"))
            else:
                keep.append(rid)
        self._query_sets[split] = keep, pd.DataFrame(dropped, columns=["split", "recipe_id", "reason"])
        return self._query_sets[split]

    def query_summary(self) -> pd.DataFrame:
        """Per split: recipes with a photo, those dropped from the shared query set and why, and the pairs used."""
        used, dropped = self.results.groupby("split").n_pairs.first(), self.dropped
        rows = []
        for split in used.index:
            d = dropped[dropped.split == split]
            rows.append({"split": split, "with photo": int(used[split]) + len(d), "dropped": len(d),
                         "why": "; ".join(f"{n} × {reason}" for reason, n in d.reason.value_counts().items()) or "-",
                         "query pairs": int(used[split])})
        return pd.DataFrame(rows).set_index("split")

    def skipped_table(self, ds: Recipe1M | None = None) -> pd.DataFrame:
        """Everything the data layer and the encoders dropped, with the reason, from the run's manifest (``ds``:
        its recipes, already read)."""
        frames = [(ds or self.dataset).skipped.assign(split="")]
        for split, path in self.manifest["image"].items():
            frames.append(Features.load(path).skipped.assign(stage="image encoder", split=split))
        entries = {p: split for paths in self.manifest["text"].values() for split, path in paths.items()
                   for p in (path if isinstance(path, list) else [path])}  # concat lists its parts' entries
        for path, split in entries.items():
            feats = Features.load(path)
            frames.append(feats.skipped.assign(stage=f"text encoder ({feats.meta['text_kind']})", split=split))
        return pd.concat(frames, ignore_index=True)[["stage", "split", "id", "reason"]]

    def model_entry(self, config) -> dict:
        """The models.json entry of a configuration (text kind, model, shrinkage, latent dim)."""
        keys = ("text_kind", "model", "shrinkage", "latent_dim")
        return next(e for e in self.models if all(e[k] == config[k] for k in keys))

    def shown_path(self, path) -> str:
        """A photo's path as a shared page shows it: within the run's data folder, not this machine's folders."""
        root = Path(self.manifest["data"]["root"])
        return str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else Path(path).name
