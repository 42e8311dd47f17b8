import hashlib
import json

import numpy as np
from PIL import Image

from cmr_utils.data import demo
from cmr_utils.data.recipe1m import Recipe1M


def digest(root):
    h = hashlib.sha1()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_corpus(tmp_path, demo_root):
    again = demo.generate(tmp_path / "again", n_recipes=60, seed=3, progress=False)
    other = demo.generate(tmp_path / "other", n_recipes=60, seed=4, progress=False)
    assert digest(again) == digest(demo_root)
    assert digest(other) != digest(demo_root)


def test_the_corpus_is_the_same_written_by_one_process_or_several(tmp_path, demo_root, monkeypatch):
    """Recipes are rendered by a process per core: how many must not change a byte."""
    monkeypatch.setattr(demo, "_processes", lambda: 1)
    alone = demo.generate(tmp_path / "alone", n_recipes=60, seed=3, progress=False)
    monkeypatch.setattr(demo, "_processes", lambda: 3)
    three = demo.generate(tmp_path / "three", n_recipes=60, seed=3, progress=False)
    assert digest(alone) == digest(three) == digest(demo_root)


def test_recipe1m_layout(demo_root):
    layer1 = json.loads((demo_root / "layer1.json").read_text())
    assert {r["partition"] for r in layer1} == {"train", "val", "test"}
    assert all(set(r) >= {"id", "title", "ingredients", "instructions", "partition"} for r in layer1)
    ds = Recipe1M(demo_root)
    for r in ds.recipes.values():
        for im in r.images:
            p = ds.image_path(r.partition, im)
            assert p.is_file() and p.relative_to(demo_root).parts[:6] == ("images", r.partition, *im[:4])


def test_photos_depend_on_their_recipe(demo_root):
    """The mean colour of a photo's food tracks the colours of the recipe's ingredients."""
    ds = Recipe1M(demo_root)
    predicted, observed = [], []
    colour = {name: np.array(rgb, float) for name, (rgb, _) in demo.INGREDIENTS.items()}
    for r in ds.recipes.values():
        names = [n for line in r.ingredients for n in colour if any(line.endswith(" " + w) for w in demo.SYNONYMS[n])]
        predicted.append(np.mean([colour[n] for n in names], axis=0))
        img = np.asarray(Image.open(ds.image_path(r.partition, r.images[0])), float)
        centre = img[96:160, 96:160].reshape(-1, 3).mean(0)
        observed.append(centre)
    predicted, observed = np.array(predicted), np.array(observed)
    # red minus blue of the ingredients predicts red minus blue of the photo's centre
    p, o = predicted[:, 0] - predicted[:, 2], observed[:, 0] - observed[:, 2]
    assert np.corrcoef(p, o)[0, 1] > 0.3


def test_the_text_names_ingredients_by_their_synonyms(demo_root):
    lines = " | ".join(line for r in Recipe1M(demo_root).recipes.values() for line in r.ingredients)
    said = {n: [w for w in words if lines.count(" " + w + " |") or lines.endswith(" " + w)]
            for n, words in demo.SYNONYMS.items()}
    assert sum(len(w) > 1 for w in said.values()) >= 10  # one ingredient, several names


def test_recipes_are_variations_of_shared_dishes(demo_root):
    """Many recipes share their dish's main ingredients: retrieval must tell near twins apart."""
    canonical = {w: n for n, words in demo.SYNONYMS.items() for w in words}
    sets = [{canonical[w] for line in r.ingredients for w in canonical if line.endswith(" " + w)}
            for r in Recipe1M(demo_root).recipes.values()]
    assert len(demo._bases(np.random.default_rng(0))) == demo.N_DISHES
    shared = [len(a & b) >= 2 for i, a in enumerate(sets) for b in sets[i + 1:]]
    print(f"{np.mean(shared):.1%} of recipe pairs share two or more ingredients")
    assert np.mean(shared) > 0.05


def test_ensure_generates_once(tmp_path):
    root = demo.ensure(tmp_path, n_recipes=20, seed=1)
    stamp = (root / "layer1.json").stat().st_mtime_ns
    assert demo.ensure(tmp_path, n_recipes=20, seed=1) == root
    assert (root / "layer1.json").stat().st_mtime_ns == stamp
