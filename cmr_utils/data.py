"""Recipe1M layout: ``layer1.json`` (recipes), ``layer2.json`` (recipe -> images), nested image folders.

The loader keeps what it can use and records every entry it drops with a reason, so a run on a
real, imperfect download says what it skipped instead of crashing or silently shrinking.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from .io import file_digest

SPLITS = ("train", "val", "test")
TEXT_KINDS = ("title", "ingredients", "instructions", "all")


@dataclass
class Recipe:
    id: str
    title: str
    ingredients: list[str]
    instructions: list[str]
    partition: str
    images: list[str] = field(default_factory=list)

    def text(self, kind: str) -> str:
        """The recipe's text of one kind; 'all' joins title, ingredients and instructions."""
        if kind == "title":
            return self.title
        if kind == "ingredients":
            return "\n".join(self.ingredients)
        if kind == "instructions":
            return "\n".join(self.instructions)
        if kind == "all":
            return "\n".join(p for p in (self.title, *self.ingredients, *self.instructions) if p)
        raise ValueError(f"unknown text kind {kind!r}; choose from {TEXT_KINDS}")


class Recipe1M:
    """A Recipe1M-layout folder: recipes with their image ids, and the entries that were dropped.

    ``skipped`` is a DataFrame (stage, id, reason) of layer2 entries without a recipe, recipes
    without images, and listed images whose file is missing. With ``ingredients="detected"``
    the ingredients text is Recipe1M's ``det_ingrs.json`` (the ingredient names it marks valid,
    e.g. "penne" for "1 pound penne pasta, cooked") instead of the raw lines.
    """

    def __init__(self, root: str | Path, ingredients: str = "raw"):
        self.root = Path(root)
        if ingredients not in ("raw", "detected"):
            raise ValueError(f"ingredients must be 'raw' or 'detected', got {ingredients!r}")
        self.ingredients = ingredients
        for name in ("layer1.json", "layer2.json"):
            if not (self.root / name).is_file():
                raise FileNotFoundError(
                    f"{self.root / name} not found. A Recipe1M folder holds layer1.json, layer2.json and "
                    "images/<partition>/a/b/c/d/<image id>; set data_dir to such a folder "
                    "(or leave it empty for the embedded demo corpus).")
        skipped: list[tuple[str, str, str]] = []
        self.recipes: dict[str, Recipe] = {}
        for r in iter_json_array(self.root / "layer1.json"):
            if r.get("partition") not in SPLITS:
                skipped.append(("layer1", str(r.get("id")), f"unknown partition {r.get('partition')!r}"))
                continue
            self.recipes[r["id"]] = Recipe(
                id=r["id"], title=(r.get("title") or "").strip(),
                ingredients=[t for t in (_text(x) for x in r.get("ingredients") or []) if t],
                instructions=[t for t in (_text(x) for x in r.get("instructions") or []) if t],
                partition=r["partition"])
        for entry in iter_json_array(self.root / "layer2.json"):
            recipe = self.recipes.get(entry.get("id"))
            if recipe is None:
                skipped.append(("layer2", str(entry.get("id")), "layer2 entry for a recipe not in layer1"))
                continue
            for im in entry.get("images") or []:
                if self.image_path(recipe.partition, im["id"]).is_file():
                    recipe.images.append(im["id"])
                else:
                    skipped.append(("image", im["id"], "image file missing"))
        for r in self.recipes.values():
            if not r.images:
                skipped.append(("layer1", r.id, "recipe has no image"))
        if ingredients == "detected":
            self._use_detected(skipped)
        self.skipped = pd.DataFrame(skipped, columns=["stage", "id", "reason"])

    def _use_detected(self, skipped: list) -> None:
        path = self.root / "det_ingrs.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: ingredients='detected' needs Recipe1M's det_ingrs.json")
        seen = set()
        for entry in iter_json_array(path):
            recipe = self.recipes.get(entry.get("id"))
            if recipe is None:
                continue
            seen.add(recipe.id)
            names = [_text(x) for x in entry.get("ingredients") or []]
            recipe.ingredients = [n for n, ok in zip(names, entry.get("valid") or []) if ok and n]
        skipped += [("det_ingrs", rid, "no detected ingredients entry") for rid in self.recipes if rid not in seen]

    def image_path(self, partition: str, image_id: str) -> Path:
        return self.root / "images" / partition / Path(*image_id[:4]) / image_id

    def split(self, partition: str) -> list[Recipe]:
        """Recipes of one partition that have at least one image, in file order."""
        if partition not in SPLITS:
            raise ValueError(f"unknown split {partition!r}; choose from {SPLITS}")
        return [r for r in self.recipes.values() if r.partition == partition and r.images]

    def fingerprint(self) -> str:
        """Content hash of the two JSON files: part of every cache key built on this data."""
        digest = file_digest(self.root / "layer1.json") + file_digest(self.root / "layer2.json")
        return digest + ("-det" + file_digest(self.root / "det_ingrs.json") if self.ingredients == "detected" else "")

    def counts(self) -> pd.DataFrame:
        rows = [{"split": s, "recipes": len(rs), "images": sum(len(r.images) for r in rs)}
                for s in SPLITS for rs in [self.split(s)]]
        return pd.DataFrame(rows).set_index("split")


def _text(item) -> str:
    return str((item.get("text") if isinstance(item, dict) else item) or "").strip()


def iter_json_array(path: str | Path, chunk_size: int = 1 << 20) -> Iterator[dict]:
    """Yield the elements of a top-level JSON array one by one, reading the file in chunks.

    Recipe1M's layer1.json is 1.3 GB; ``json.load`` would hold the text and every parsed object
    at once, while this holds one chunk plus the objects the caller keeps.
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as f:
        buf, pos = f.read(chunk_size), 0
        pos = _skip_ws(buf, pos)
        if not buf.startswith("[", pos):
            raise ValueError(f"{path}: expected a JSON array")
        pos += 1
        eof = False
        while True:
            pos = _skip_ws(buf, pos)
            if pos < len(buf) and buf[pos] == ",":
                pos = _skip_ws(buf, pos + 1)
            if pos < len(buf) and buf[pos] == "]":
                return
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if eof:
                    raise ValueError(f"{path}: truncated or malformed JSON near character {pos}")
                more = f.read(chunk_size)
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            if end == len(buf) and not eof:  # a number may continue in the next chunk
                more = f.read(chunk_size)
                eof = not more
                if more:
                    buf, pos = buf[pos:] + more, 0
                    continue
            yield obj
            pos = end


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos
