"""Embedded demo corpus: synthetic recipes with rendered photos, in Recipe1M layout.

Each photo is drawn from its recipe (ingredients as coloured shapes, the dish as the
vessel and layout, the cooking method as tint and texture), so text and image share
real signal, while random placement, backgrounds, noise and overlapping ingredient sets
keep retrieval from being trivial. Generation is deterministic in ``seed`` and needs no
download, so the demo flows through exactly the same loader as Recipe1M.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .io import atomic_dir, locked
from .progress import bar as progress_bar

VERSION = 1  # bump when the output of generate() changes
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
SPLITS = (("train", 0.55), ("val", 0.1), ("test", 0.35))  # 3000 recipes: 1,050 test, so 1k bags differ
_HEX = np.array(list("0123456789abcdef"))


def generate(root: str | Path, n_recipes: int = 3000, seed: int = 0, progress: bool = True) -> Path:
    """Write a corpus of ``n_recipes`` to ``root`` (replaced atomically) and return it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_train = int(round(n_recipes * SPLITS[0][1]))
    n_val = int(round(n_recipes * SPLITS[1][1]))
    partitions = ["train"] * n_train + ["val"] * n_val + ["test"] * (n_recipes - n_train - n_val)
    ids = _unique_hex(rng, 2 * n_recipes + n_recipes * 3)
    recipe_seeds = rng.integers(0, 2**63, size=n_recipes)
    layer1, layer2 = [], []
    with atomic_dir(root) as tmp:
        for i in progress_bar(range(n_recipes), desc="demo corpus", disable=not progress, unit="recipe"):
            r = np.random.default_rng(recipe_seeds[i])
            recipe = _recipe(r)
            rid = ids[i]
            layer1.append({
                "id": rid, "title": recipe["title"], "partition": partitions[i],
                "ingredients": [{"text": t} for t in recipe["ingredient_lines"]],
                "instructions": [{"text": t} for t in recipe["steps"]],
                "url": f"demo://recipe/{rid}",
            })
            n_images = 1 + int(r.random() < 0.35)
            images = []
            for k in range(n_images):
                image_id = ids[n_recipes + 3 * i + k] + ".jpg"
                path = tmp / "images" / partitions[i] / Path(*image_id[:4]) / image_id
                path.parent.mkdir(parents=True, exist_ok=True)
                _render(recipe, r).save(path, quality=90)
                images.append({"id": image_id, "url": f"demo://image/{image_id}"})
            layer2.append({"id": rid, "images": images})
        (tmp / "layer1.json").write_text(json.dumps(layer1))
        (tmp / "layer2.json").write_text(json.dumps(layer2))
    return root


def ensure(cache_dir: str | Path, n_recipes: int = 3000, seed: int = 0) -> Path:
    """Return the demo corpus for these settings, generating it once per cache (a finished one needs no write access)."""
    root = Path(cache_dir) / "data" / f"demo-v{VERSION}-n{n_recipes}-s{seed}"
    if not (root / "layer2.json").exists():
        with locked(root):
            if not (root / "layer2.json").exists():
                if root.exists():
                    shutil.rmtree(root)
                generate(root, n_recipes, seed)
    return root


def _unique_hex(rng: np.random.Generator, n: int) -> list[str]:
    out, seen = [], set()
    while len(out) < n:
        s = "".join(_HEX[rng.integers(0, 16, 10)])
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def _recipe(r: np.random.Generator) -> dict:
    names = list(INGREDIENTS)
    dish = list(DISHES)[r.integers(len(DISHES))]
    method = list(METHODS)[r.integers(len(METHODS))]
    chosen = [names[j] for j in r.choice(len(names), size=r.integers(3, 7), replace=False)]
    amounts = r.uniform(0.3, 1.0, size=len(chosen))
    order = np.argsort(-amounts)
    chosen = [chosen[j] for j in order]
    amounts = amounts[order]
    _, words, = DISHES[dish]
    word = words[r.integers(len(words))]
    adjective = METHODS[method][3]
    title = f"{adjective} {chosen[0].title()} and {chosen[1].title()} {word}"
    if r.random() < 0.3:
        title = f"{chosen[0].title()} {word} with {chosen[2].title()}"
    lines = [
        f"{1 + int(a * 3)} {UNITS[r.integers(len(UNITS))]} {PREPS[r.integers(len(PREPS))]} {name}"
        for name, a in zip(chosen, amounts)
    ]
    verb = METHODS[method][4].format(t=int(r.integers(5, 60)))
    steps = [
        f"Prepare the {chosen[0]} and the {chosen[1]}.",
        f"Combine with the {', '.join(chosen[2:]) or 'rest'} in a {DISHES[dish][0]}.",
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
    for name, amount in zip(recipe["ingredients"], recipe["amounts"]):
        colour, shape = INGREDIENTS[name]
        for _ in range(int(2 + amount * 9)):
            a, rr = r.uniform(0, 2 * np.pi), area * np.sqrt(r.uniform(0, 1))
            _shape(d, shape, cx + rr * np.cos(a), cy + rr * np.sin(a), s * r.uniform(0.03, 0.06), colour, r)
    tint, strength, blur, _, _ = METHODS[recipe["method"]]
    if recipe["method"] == "grilled":
        for k in range(-3, 4):
            x = cx + k * rad * 0.25
            d.line([x - rad * 0.3, cy - rad * 0.7, x + rad * 0.3, cy + rad * 0.7], fill=(40, 25, 15), width=4)
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * (1 - strength) + np.array(tint, dtype=np.float32) * strength
    arr += r.normal(0, 8, size=arr.shape)
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
