"""Embedded demo corpus: synthetic recipes with rendered photos, in Recipe1M layout.

Each photo is drawn from its recipe (ingredients as coloured shapes, the dish as the
vessel and layout, the cooking method as tint and texture), so text and image share
real signal. What makes retrieval hard, as on real photos: recipes are variations of a few
dozen shared dishes (the same vessel, method and main ingredients), so many look alike;
a photo shows only some of its ingredients, with a garnish that is not in the recipe, under
its own light, table, framing and camera noise; and the text names an ingredient by one of
its synonyms, with titles that sometimes name no ingredient at all. Generation is
deterministic in ``seed`` and needs no download, so the demo flows through exactly the same
loader as Recipe1M.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cmr_utils.io import atomic_dir, built
from cmr_utils.progress import bar as progress_bar

VERSION = 2  # bump when the output of generate() changes
IMAGE_SIZE = 256

# name: (RGB colour, shape drawn on the photo)
INGREDIENTS = {
    "tomato": ((214, 40, 40), "circle"), "strawberry": ((200, 22, 60), "triangle"),
    "red pepper": ((190, 30, 20), "square"), "beet": ((125, 20, 70), "circle"),
    "carrot": ((240, 120, 20), "stripe"), "pumpkin": ((230, 130, 30), "square"),
    "lemon": ((250, 230, 60), "circle"), "corn": ((245, 205, 40), "dots"),
    "cheddar cheese": ((250, 200, 70), "square"), "banana": ((245, 225, 120), "stripe"),
    "egg": ((250, 245, 215), "ellipse"), "potato": ((205, 175, 115), "square"),
    "rice": ((242, 242, 232), "dots"), "pasta": ((238, 214, 140), "stripe"),
    "bread": ((196, 146, 86), "square"), "chicken": ((228, 196, 158), "ellipse"),
    "beef": ((115, 48, 38), "ellipse"), "pork": ((220, 160, 150), "ellipse"),
    "salmon": ((250, 135, 105), "stripe"), "shrimp": ((250, 150, 120), "triangle"),
    "mushroom": ((155, 125, 95), "circle"), "chocolate": ((78, 44, 24), "square"),
    "spinach": ((38, 118, 40), "leaf"), "basil": ((50, 150, 50), "leaf"),
    "broccoli": ((30, 105, 40), "dots"), "peas": ((105, 190, 60), "dots"),
    "avocado": ((150, 190, 80), "ellipse"), "cucumber": ((140, 200, 120), "circle"),
    "blueberry": ((50, 60, 150), "dots"), "eggplant": ((80, 40, 90), "ellipse"),
    "black olive": ((45, 45, 35), "circle"), "red onion": ((170, 80, 150), "ring"),
    "garlic": ((240, 238, 215), "dots"), "cream": ((252, 250, 240), "ellipse"),
    "raspberry": ((220, 40, 110), "dots"), "kale": ((25, 80, 45), "leaf"),
}

# how the text may name an ingredient (the first is its canonical name)
SYNONYMS = {
    "tomato": ["tomato", "roma tomatoes", "cherry tomatoes"], "strawberry": ["strawberry", "strawberries"],
    "red pepper": ["red pepper", "red bell pepper", "capsicum"], "beet": ["beet", "beetroot"],
    "carrot": ["carrot", "baby carrots"], "pumpkin": ["pumpkin", "butternut squash", "squash"],
    "lemon": ["lemon", "lemon zest", "meyer lemon"], "corn": ["corn", "sweet corn", "corn kernels"],
    "cheddar cheese": ["cheddar cheese", "sharp cheddar", "grated cheese"], "banana": ["banana", "ripe bananas"],
    "egg": ["egg", "large eggs", "egg yolks"], "potato": ["potato", "yukon gold potatoes", "spuds"],
    "rice": ["rice", "basmati rice", "arborio rice"], "pasta": ["pasta", "penne", "spaghetti"],
    "bread": ["bread", "sourdough", "baguette"], "chicken": ["chicken", "chicken thighs", "chicken breast"],
    "beef": ["beef", "ground beef", "sirloin"], "pork": ["pork", "pork shoulder", "pork loin"],
    "salmon": ["salmon", "salmon fillet"], "shrimp": ["shrimp", "prawns"],
    "mushroom": ["mushroom", "cremini mushrooms", "button mushrooms"],
    "chocolate": ["chocolate", "dark chocolate", "cocoa"], "spinach": ["spinach", "baby spinach"],
    "basil": ["basil", "fresh basil leaves"], "broccoli": ["broccoli", "broccoli florets"],
    "peas": ["peas", "green peas", "sweet peas"], "avocado": ["avocado", "hass avocado"],
    "cucumber": ["cucumber", "english cucumber"], "blueberry": ["blueberry", "blueberries", "wild blueberries"],
    "eggplant": ["eggplant", "aubergine"], "black olive": ["black olive", "kalamata olives"],
    "red onion": ["red onion", "shallot"], "garlic": ["garlic", "garlic cloves"],
    "cream": ["cream", "heavy cream", "creme fraiche"], "raspberry": ["raspberry", "raspberries"],
    "kale": ["kale", "lacinato kale", "greens"],
}

# dish: (vessel drawn, words used in titles)
DISHES = {
    "soup": ("bowl", ["Soup", "Bisque", "Chowder"]),
    "salad": ("plate", ["Salad", "Slaw"]),
    "cake": ("cake", ["Cake", "Torte"]),
    "pizza": ("pizza", ["Pizza", "Flatbread"]),
    "stew": ("bowl", ["Stew", "Curry"]),
    "pasta": ("plate", ["Pasta", "Linguine"]),
    "pie": ("pie", ["Pie", "Tart"]),
    "smoothie": ("glass", ["Smoothie", "Shake"]),
    "skewers": ("board", ["Skewers", "Kebabs"]),
}

# method: (RGB tint, tint strength, blur radius, title adjective, verb for instructions)
METHODS = {
    "baked": ((150, 90, 40), 0.30, 1.0, "Baked", "Bake in the oven at 375F for {t} minutes"),
    "fried": ((230, 170, 50), 0.30, 0.5, "Crispy Fried", "Fry in hot oil for {t} minutes until golden"),
    "grilled": ((40, 30, 20), 0.20, 0.0, "Grilled", "Grill over high heat for {t} minutes, turning once"),
    "fresh": ((255, 255, 255), 0.00, 0.0, "Fresh", "Toss everything together and serve right away"),
    "steamed": ((235, 235, 235), 0.25, 1.5, "Steamed", "Steam for {t} minutes until tender"),
    "roasted": ((120, 60, 30), 0.25, 0.8, "Roasted", "Roast at 425F for {t} minutes"),
}

UNITS = ["cup", "cups", "tablespoons", "teaspoon", "ounces", "pound", "pieces", "handful of"]
PREPS = ["chopped", "diced", "sliced", "minced", "grated", "whole", "halved", "crushed"]
FILLER = [
    "Season with salt and pepper to taste.", "Let rest for 5 minutes before serving.",
    "Garnish as desired.", "Adjust the seasoning.", "Serve warm.",
    "Stir occasionally so nothing sticks.", "Preheat everything you need before starting.",
]
TITLE_WORDS = ["Easy", "Weeknight", "Sunday", "Rustic", "Classic", "Family", "Summer", "Winter", "Quick", "Homestyle"]
SPLITS = (("train", 0.55), ("val", 0.1), ("test", 0.35))  # 3000 recipes: 1,050 test, so 1k bags differ
N_DISHES = 40  # the shared dishes every recipe is a variation of
_HEX = np.array(list("0123456789abcdef"))


def generate(root: str | Path, n_recipes: int = 3000, seed: int = 0, progress: bool = True) -> Path:
    """Write a corpus of ``n_recipes`` to ``root`` (replaced atomically) and return it.

    Each recipe draws from its own seeded generator, so recipes are written by a process per core
    (rendering the photos is the cost) and the corpus is the same whatever the number of processes.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_train = int(round(n_recipes * SPLITS[0][1]))
    n_val = int(round(n_recipes * SPLITS[1][1]))
    partitions = ["train"] * n_train + ["val"] * n_val + ["test"] * (n_recipes - n_train - n_val)
    ids = _unique_hex(rng, 2 * n_recipes + n_recipes * 3)
    bases = _bases(rng)
    recipe_seeds = rng.integers(0, 2**63, size=n_recipes)
    with atomic_dir(root) as tmp:
        jobs = [(ids[i], partitions[i], recipe_seeds[i], ids[n_recipes + 3 * i:n_recipes + 3 * i + 2], tmp, bases)
                for i in range(n_recipes)]
        processes = _processes()
        with ProcessPoolExecutor(processes) if processes > 1 else contextlib.nullcontext() as pool:
            written = list(progress_bar(pool.map(_write, jobs, chunksize=32) if pool else map(_write, jobs),
                                        total=n_recipes, desc="demo corpus", disable=not progress, unit="recipe"))
        layer1, layer2 = zip(*written) if written else ((), ())
        (tmp / "layer1.json").write_text(json.dumps(list(layer1)))
        (tmp / "layer2.json").write_text(json.dumps(list(layer2)))
    return root


def _processes() -> int:
    """One per core this process may use; just this one where it may start none (a Dask worker: a daemon)."""
    return 1 if multiprocessing.current_process().daemon else len(os.sched_getaffinity(0))


def _write(job: tuple) -> tuple[dict, dict]:
    """One recipe (its layer1 and layer2 entries), its one or two photos written under ``tmp``."""
    rid, partition, recipe_seed, image_ids, tmp, bases = job
    r = np.random.default_rng(recipe_seed)
    recipe = _recipe(r, bases)
    entry = {"id": rid, "title": recipe["title"], "partition": partition,
             "ingredients": [{"text": t} for t in recipe["ingredient_lines"]],
             "instructions": [{"text": t} for t in recipe["steps"]],
             "url": f"demo://recipe/{rid}"}
    images = []
    for image_id in [f"{h}.jpg" for h in image_ids[:1 + int(r.random() < 0.35)]]:
        path = tmp / "images" / partition / Path(*image_id[:4]) / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        _render(recipe, r).save(path, quality=90)
        images.append({"id": image_id, "url": f"demo://image/{image_id}"})
    return entry, {"id": rid, "images": images}


def ensure(cache_dir: str | Path, n_recipes: int = 3000, seed: int = 0) -> Path:
    """Return the demo corpus for these settings, generating it once per cache (a finished one needs no write access)."""
    root = Path(cache_dir) / "data" / f"demo-v{VERSION}-n{n_recipes}-s{seed}"
    return built(root, lambda dest: generate(dest, n_recipes, seed), done=root / "layer2.json")


def _unique_hex(rng: np.random.Generator, n: int) -> list[str]:
    out, seen = [], set()
    while len(out) < n:
        s = "".join(_HEX[rng.integers(0, 16, 10)])
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def _bases(rng: np.random.Generator) -> list[dict]:
    """The shared dishes: a dish, a method and three main ingredients each, common ones more often."""
    names = list(INGREDIENTS)
    return [{"dish": list(DISHES)[rng.integers(len(DISHES))], "method": list(METHODS)[rng.integers(len(METHODS))],
             "main": [names[j] for j in rng.choice(len(names), size=3, replace=False)],
             "weight": 1 / (k + 5)} for k in range(N_DISHES)]


def _recipe(r: np.random.Generator, bases: list[dict]) -> dict:
    """A variation of a shared dish: most of its main ingredients, one to three of its own, now and then
    another method; the text names each ingredient by one of its synonyms."""
    weights = np.array([b["weight"] for b in bases])
    base = bases[r.choice(len(bases), p=weights / weights.sum())]
    names = list(INGREDIENTS)
    dish = base["dish"]
    method = base["method"] if r.random() < 0.8 else list(METHODS)[r.integers(len(METHODS))]
    main = [n for n in base["main"] if r.random() < 0.85] or base["main"][:1]
    extra = [n for n in names if n not in main]
    chosen = main + [extra[j] for j in r.choice(len(extra), size=r.integers(1, 4), replace=False)]
    amounts = r.uniform(0.3, 1.0, size=len(chosen))
    order = np.argsort(-amounts)
    chosen = [chosen[j] for j in order]
    amounts = amounts[order]
    said = {n: SYNONYMS[n][r.integers(len(SYNONYMS[n]))] for n in chosen}
    words = DISHES[dish][1]
    word = words[r.integers(len(words))]
    adjective = METHODS[method][3]
    first, second = said[chosen[0]].title(), said[chosen[1]].title()
    title = [f"{adjective} {first} and {second} {word}", f"{first} {word} with {second}",
             f"{TITLE_WORDS[r.integers(len(TITLE_WORDS))]} {first} {word}",
             f"{TITLE_WORDS[r.integers(len(TITLE_WORDS))]} {adjective} {word}"][r.choice(4, p=[0.4, 0.25, 0.2, 0.15])]
    lines = [
        f"{1 + int(a * 3)} {UNITS[r.integers(len(UNITS))]} {PREPS[r.integers(len(PREPS))]} {said[name]}"
        for name, a in zip(chosen, amounts)
    ]
    verb = METHODS[method][4].format(t=int(r.integers(5, 60)))
    steps = [
        f"Prepare the {said[chosen[0]]} and the {said[chosen[1]]}.",
        f"Combine with the {', '.join(said[n] for n in chosen[2:]) or 'rest'} in a {DISHES[dish][0]}.",
        verb + ".",
    ]
    steps += list(r.choice(FILLER, size=r.integers(1, 4), replace=False))
    return {"title": title, "dish": dish, "method": method, "ingredients": chosen,
            "amounts": amounts, "ingredient_lines": lines, "steps": steps}


def _render(recipe: dict, r: np.random.Generator) -> Image.Image:
    s = IMAGE_SIZE
    table = tuple(int(c) for c in r.integers(60, 220, size=3))
    img = Image.new("RGB", (s, s), table)
    d = ImageDraw.Draw(img)
    cx, cy = s / 2 + r.normal(0, 10), s / 2 + r.normal(0, 10)
    vessel = DISHES[recipe["dish"]][0]
    rad = s * r.uniform(0.36, 0.44)
    colours = [INGREDIENTS[n][0] for n in recipe["ingredients"]]
    mix = tuple(int(v) for v in np.average(colours, axis=0, weights=recipe["amounts"]))
    if vessel == "bowl":
        d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=(235, 235, 240), outline=(90, 90, 90), width=3)
        d.ellipse([cx - rad * 0.8, cy - rad * 0.8, cx + rad * 0.8, cy + rad * 0.8], fill=mix)
        area = rad * 0.75
    elif vessel == "glass":
        d.rectangle([cx - rad * 0.45, cy - rad, cx + rad * 0.45, cy + rad], fill=mix, outline=(220, 220, 230), width=5)
        area = rad * 0.4
    elif vessel in ("cake", "pie", "pizza"):
        crust = {"cake": (120, 70, 40), "pie": (205, 150, 80), "pizza": (225, 185, 120)}[vessel]
        d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=crust)
        inner = 0.85 if vessel != "cake" else 0.95
        d.ellipse([cx - rad * inner, cy - rad * inner, cx + rad * inner, cy + rad * inner],
                  fill=mix if vessel != "pizza" else (200, 50, 35))
        area = rad * 0.8
    elif vessel == "board":
        d.rectangle([cx - rad, cy - rad * 0.6, cx + rad, cy + rad * 0.6], fill=(160, 115, 70))
        for k in range(3):
            y = cy - rad * 0.4 + k * rad * 0.4
            d.line([cx - rad * 0.9, y, cx + rad * 0.9, y], fill=(90, 90, 90), width=2)
        area = rad * 0.6
    else:  # plate
        d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=(248, 248, 248), outline=(180, 180, 180), width=2)
        area = rad * 0.8
    shown = [(n, a) for n, a in zip(recipe["ingredients"], recipe["amounts"]) if r.random() < 0.75]
    garnish = [n for n in INGREDIENTS if n not in recipe["ingredients"]]
    shown += [(garnish[j], 0.2) for j in r.choice(len(garnish), size=r.integers(0, 3), replace=False)]
    for name, amount in shown:
        colour, shape = INGREDIENTS[name]
        for _ in range(int(1 + amount * 6)):
            a, rr = r.uniform(0, 2 * np.pi), area * np.sqrt(r.uniform(0, 1))
            _shape(d, shape, cx + rr * np.cos(a), cy + rr * np.sin(a), s * r.uniform(0.03, 0.06), colour, r)
    tint, strength, blur, _, _ = METHODS[recipe["method"]]
    if recipe["method"] == "grilled":
        for k in range(-3, 4):
            x = cx + k * rad * 0.25
            d.line([x - rad * 0.3, cy - rad * 0.7, x + rad * 0.3, cy + rad * 0.7], fill=(40, 25, 15), width=4)
    zoom = r.uniform(0.7, 1.0) * s  # the photo's framing: a random crop, back to full size
    x0, y0 = r.uniform(0, s - zoom, size=2)
    img = img.resize((s, s), Image.BILINEAR, box=(x0, y0, x0 + zoom, y0 + zoom))
    light = r.uniform(0.75, 1.25, size=3).astype(np.float32)  # the light's colour and brightness
    arr = np.asarray(img, dtype=np.float32) * ((1 - strength) * light) + np.array(tint, np.float32) * strength * light
    arr += r.normal(0, r.uniform(4, 20), size=arr.shape)  # the camera's noise
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if blur:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    return out


def _shape(d: ImageDraw.ImageDraw, shape: str, x: float, y: float, size: float, colour, r) -> None:
    box = [x - size, y - size, x + size, y + size]
    if shape == "circle":
        d.ellipse(box, fill=colour)
    elif shape == "ring":
        d.ellipse(box, outline=colour, width=max(2, int(size / 3)))
    elif shape == "ellipse":
        d.ellipse([x - size * 1.6, y - size * 0.8, x + size * 1.6, y + size * 0.8], fill=colour)
    elif shape == "square":
        d.rectangle(box, fill=colour)
    elif shape == "triangle":
        d.polygon([(x, y - size), (x - size, y + size), (x + size, y + size)], fill=colour)
    elif shape == "stripe":
        a = r.uniform(0, np.pi)
        dx, dy = np.cos(a) * size * 1.8, np.sin(a) * size * 1.8
        d.line([x - dx, y - dy, x + dx, y + dy], fill=colour, width=max(3, int(size / 2)))
    elif shape == "leaf":
        d.polygon([(x - size * 1.5, y), (x, y - size * 0.7), (x + size * 1.5, y), (x, y + size * 0.7)], fill=colour)
    else:  # dots
        for _ in range(4):
            px, py = x + r.normal(0, size * 0.8), y + r.normal(0, size * 0.8)
            d.ellipse([px - size * 0.3, py - size * 0.3, px + size * 0.3, py + size * 0.3], fill=colour)
