"""A run folder and what the stages read from it: the manifest, pairs, query sets, the fitted entries.

Stages talk only through files in a run folder (``features.json``, ``models.json``, ``results.csv``);
this is where they are read, so every notebook is rerunnable alone.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import yaml

from cmr_utils import paths
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.evaluate.results import load as load_results
from cmr_utils.features import lexical
from cmr_utils.features.store import (
    Features,
    concat,
    paired,
)

CONCAT_PARTS = ("title", "ingredients", "instructions")  # concat's default parts
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


def read(run_dir, name: str):
    path = Path(run_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the notebook that writes it first "
                                "(01_extract -> features.json, 02_fit -> models.json).")
    return json.loads(path.read_text())


def dataset(manifest: dict) -> Recipe1M:
    """The run's recipes, read as extraction read them (a synthetic corpus has no photo files)."""
    return Recipe1M(manifest["data"]["root"], manifest["data"]["ingredients"], need_files=manifest["data"]["photos"])


def skipped_table(run_dir, ds: Recipe1M | None = None) -> pd.DataFrame:
    """Everything the data layer and the encoders dropped, with the reason, from the run's manifest (``ds``: its
    recipes, already read)."""
    manifest = read(run_dir, "features.json")
    frames = [(ds or dataset(manifest)).skipped.assign(split="")]
    for split, path in manifest["image"].items():
        frames.append(Features.load(path).skipped.assign(stage="image encoder", split=split))
    entries = {p: split for paths in manifest["text"].values() for split, path in paths.items()
               for p in (path if isinstance(path, list) else [path])}  # concat lists its parts' entries
    for path, split in entries.items():
        feats = Features.load(path)
        frames.append(feats.skipped.assign(stage=f"text encoder ({feats.meta['text_kind']})", split=split))
    return pd.concat(frames, ignore_index=True)[["stage", "split", "id", "reason"]]


QUERY_SET = "query set (evaluation)"


def read_skipped(run_dir) -> pd.DataFrame:
    """``skipped.csv`` (stage, split, id, reason): what extraction and evaluation left out and why, ids as written."""
    return pd.read_csv(Path(run_dir) / "skipped.csv", dtype=str, keep_default_na=False)


def pairs(manifest: dict, kind: str, split: str, recipes=None):
    """(image features, text features, index) of one text kind and split, row-aligned.

    ``recipes`` (recipe ids) restricts the pairs to those recipes, in image-entry order.
    """
    entry = manifest["text"][kind][split]
    text = concat([Features.load(p) for p in entry]) if isinstance(entry, list) else Features.load(entry)
    return paired(Features.load(manifest["image"][split]), text, recipes)


def concat_kinds(manifest: dict) -> list[str]:
    """The text kinds ``concat`` stacks in a run, in order (a features.json from before they were a parameter:
    the default three)."""
    return list(manifest.get("concat_parts", CONCAT_PARTS))


def text_encoder_name(manifest: dict, kind: str) -> str:
    """What a text kind's features came from, as results.csv names it: the neural encoder, ``lexical``, or both
    for a ``concat`` that stacks them."""
    parts = concat_kinds(manifest) if kind == "concat" else [kind]
    return " + ".join([manifest["encoders"]["text"]["name"]] * any(p != lexical.KIND for p in parts)
                      + [lexical.KIND] * (lexical.KIND in parts))


def query_set(manifest: dict, split: str) -> tuple[list[str], pd.DataFrame]:
    """(recipe ids, dropped) of the pairs every requested text kind is evaluated on in ``split``.

    A recipe counts only if it has an image and the text of every requested kind (and of every
    part of ``concat``), so all kinds, models and scores are ranked on the same recipes and the
    same seeded bags. ``dropped`` (split, recipe_id, reason) lists the recipes with an image
    that lack some kind's text.
    """
    parts = concat_kinds(manifest)
    kinds = list(dict.fromkeys(k for kind in manifest["text"] for k in (parts if kind == "concat" else [kind])))
    have = {}
    for kind in kinds:
        entry = manifest["text"][kind][split] if kind in manifest["text"] else \
            manifest["text"]["concat"][split][parts.index(kind)]
        have[kind] = set(Features.load(entry).index.recipe_id)
    keep, dropped = [], []
    for rid in dict.fromkeys(Features.load(manifest["image"][split]).index.recipe_id):
        missing = [k for k in kinds if rid not in have[k]]
        if missing:
            dropped.append((split, rid, "no " + " / ".join(missing) + " text"))
        else:
            keep.append(rid)
    return keep, pd.DataFrame(dropped, columns=["split", "recipe_id", "reason"])


def query_summary(run_dir) -> pd.DataFrame:
    """Per split: recipes with a photo, those dropped from the shared query set and why, and the pairs used."""
    res, dropped = load_results(run_dir), pd.read_csv(Path(run_dir) / "dropped.csv", dtype=str)
    used = res.groupby("split").n_pairs.first()
    rows = []
    for split in used.index:
        d = dropped[dropped.split == split]
        rows.append({"split": split, "with photo": int(used[split]) + len(d), "dropped": len(d),
                     "why": "; ".join(f"{n} × {reason}" for reason, n in d.reason.value_counts().items()) or "-",
                     "query pairs": int(used[split])})
    return pd.DataFrame(rows).set_index("split")


def model_entry(run_dir, config) -> dict:
    """The models.json entry of a configuration (text kind, model, shrinkage, latent dim)."""
    keys = ("text_kind", "model", "shrinkage", "latent_dim")
    return next(e for e in read(run_dir, "models.json") if all(e[k] == config[k] for k in keys))


def shown_path(path, run_dir) -> str:
    """A photo's path as a shared page shows it: within the run's data folder, not this machine's folders."""
    root = Path(read(run_dir, "features.json")["data"]["root"])
    return str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else Path(path).name
