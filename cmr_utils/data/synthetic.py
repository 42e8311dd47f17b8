"""Synthetic Recipe1M-size corpus: recipe text and planted-factor "given" features, no photos.

A full-size run (238k/51k/51k recipes, ~620k training photos) can then be reproduced and
timed without downloading Recipe1M. Each recipe has a latent vector: its dish's centroid plus
its own factors of decaying strength. Image features are that vector, jittered per photo,
mapped to 2048 dimensions under low-rank nuisance and isotropic noise; each text kind sees
the dish and a kind-specific subset of the factors (the title fewest, "all" every one) in 768
dimensions under its own noise. So retrieval is learnable but far from perfect, and the
recipe's words (dish, dominant flavours) follow the same factors, so clusters get sensible
names. Generation is deterministic in ``seed``; features are written in row blocks, each
drawn from its own seeded generator, so memory stays under 1 GB even at full scale (~10 GB on disk).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmr_utils.data.recipe1m import TEXT_KINDS
from cmr_utils.io import atomic_dir, built, key, write_npy
from cmr_utils.progress import bar as progress_bar

VERSION = 1  # bump when the output of generate() changes
SIZES = {"train": 238_000, "val": 51_000, "test": 51_000}  # Recipe1M's recipes with photos
MIN_RECIPES = 5  # per split, whatever the scale
MEAN_EXTRA_PHOTOS, MAX_PHOTOS = 1.6, 10  # photos per recipe: 1 + Poisson, capped (mean ~2.6)
IMAGE_DIM, TEXT_DIM = 2048, 768
BLOCK = 6000  # recipes per generated block (~16k training photos); changing it changes the output

N_FACTORS = 96
STRENGTHS = ((1 + np.arange(N_FACTORS) / 6) ** -0.5).astype(np.float32)  # factor j's standard deviation
DISH_SPREAD = 1.0  # dish centroids' scale relative to a recipe's own factors
PHOTO_JITTER = 0.35  # per-photo change of the latent vector, relative to the factor strengths
IMAGE_NUISANCE, IMAGE_NUISANCE_RANK, IMAGE_NOISE = 1.0, 32, 1.0
TEXT_NUISANCE_RANK = 16
# kind: (fraction of the factors beyond the flavours it sees, low-rank nuisance, isotropic noise);
# every kind sees the dish and the flavour factors, as its words name them
TEXT_VIEWS = {"title": (0.0, 1.0, 1.2), "ingredients": (0.7, 0.8, 0.8),
              "instructions": (0.6, 0.8, 0.9), "all": (1.0, 0.6, 0.7)}

# dish: (cooking method, main ingredients); dishes are the clusters of the latent space
DISHES = {
    "Chocolate Cake": ("bake", ["all-purpose flour", "sugar", "cocoa powder", "butter", "eggs"]),
    "Lemon Tart": ("bake", ["lemons", "sugar", "eggs", "butter", "pie crust"]),
    "Banana Bread": ("bake", ["ripe bananas", "all-purpose flour", "brown sugar", "eggs", "baking soda"]),
    "Blueberry Muffins": ("bake", ["blueberries", "all-purpose flour", "sugar", "milk", "baking powder"]),
    "Chocolate Chip Cookies": ("bake", ["all-purpose flour", "butter", "brown sugar", "chocolate chips", "eggs"]),
    "Apple Pie": ("bake", ["apples", "ground cinnamon", "sugar", "pie crust", "butter"]),
    "Cheesecake": ("bake", ["cream cheese", "graham crackers", "sugar", "eggs", "sour cream"]),
    "Brownies": ("bake", ["dark chocolate", "butter", "sugar", "eggs", "all-purpose flour"]),
    "Cinnamon Rolls": ("bake", ["yeast", "all-purpose flour", "ground cinnamon", "brown sugar", "cream cheese"]),
    "Mac and Cheese": ("bake", ["elbow macaroni", "cheddar cheese", "milk", "butter", "all-purpose flour"]),
    "Pepperoni Pizza": ("bake", ["pizza dough", "mozzarella cheese", "pepperoni", "tomato sauce", "dried oregano"]),
    "Lasagna": ("bake", ["lasagna noodles", "ricotta cheese", "mozzarella cheese", "ground beef", "marinara sauce"]),
    "Quiche": ("bake", ["pie crust", "eggs", "heavy cream", "bacon", "gruyere cheese"]),
    "Beef Stew": ("simmer", ["beef chuck", "carrots", "potatoes", "onion", "beef broth"]),
    "Chicken Curry": ("simmer", ["chicken thighs", "curry powder", "coconut milk", "onion", "ginger"]),
    "Tomato Soup": ("simmer", ["tomatoes", "onion", "vegetable broth", "heavy cream", "basil"]),
    "Chicken Noodle Soup": ("simmer", ["chicken breast", "egg noodles", "carrots", "celery", "chicken broth"]),
    "Spaghetti Bolognese": ("simmer", ["spaghetti", "ground beef", "tomato sauce", "onion", "garlic"]),
    "Beef Chili": ("simmer", ["ground beef", "kidney beans", "chili powder", "tomatoes", "onion"]),
    "Lentil Soup": ("simmer", ["lentils", "carrots", "celery", "cumin", "vegetable broth"]),
    "Mushroom Risotto": ("simmer", ["arborio rice", "mushrooms", "parmesan cheese", "white wine", "chicken broth"]),
    "Meatballs": ("simmer", ["ground beef", "breadcrumbs", "parmesan cheese", "eggs", "marinara sauce"]),
    "Caesar Salad": ("toss", ["romaine lettuce", "parmesan cheese", "croutons", "anchovies", "lemon juice"]),
    "Greek Salad": ("toss", ["cucumber", "tomatoes", "feta cheese", "kalamata olives", "red onion"]),
    "Coleslaw": ("toss", ["cabbage", "carrots", "mayonnaise", "cider vinegar", "sugar"]),
    "Quinoa Salad": ("toss", ["quinoa", "black beans", "corn", "bell pepper", "lime juice"]),
    "Guacamole": ("toss", ["avocados", "lime juice", "cilantro", "red onion", "jalapeno"]),
    "Hummus": ("blend", ["chickpeas", "tahini", "lemon juice", "garlic", "olive oil"]),
    "Berry Smoothie": ("blend", ["frozen berries", "banana", "greek yogurt", "milk", "honey"]),
    "Pesto Pasta": ("boil", ["penne", "basil", "pine nuts", "parmesan cheese", "olive oil"]),
    "Mashed Potatoes": ("boil", ["potatoes", "butter", "milk", "garlic", "chives"]),
    "Potato Salad": ("boil", ["red potatoes", "mayonnaise", "celery", "dijon mustard", "eggs"]),
    "Grilled Salmon": ("grill", ["salmon fillets", "lemon", "dill", "olive oil", "garlic"]),
    "Beef Burgers": ("grill", ["ground beef", "burger buns", "cheddar cheese", "lettuce", "tomato"]),
    "Chicken Skewers": ("grill", ["chicken breast", "bell peppers", "red onion", "olive oil", "paprika"]),
    "Roast Chicken": ("roast", ["whole chicken", "lemon", "thyme", "garlic", "butter"]),
    "Roasted Vegetables": ("roast", ["zucchini", "bell peppers", "red onion", "carrots", "olive oil"]),
    "Pulled Pork": ("roast", ["pork shoulder", "barbecue sauce", "brown sugar", "paprika", "burger buns"]),
    "Fried Rice": ("stir-fry", ["cooked rice", "eggs", "peas", "soy sauce", "green onions"]),
    "Beef Stir Fry": ("stir-fry", ["flank steak", "broccoli", "soy sauce", "ginger", "garlic"]),
    "Pad Thai": ("stir-fry", ["rice noodles", "shrimp", "peanuts", "bean sprouts", "fish sauce"]),
    "Shrimp Tacos": ("fry", ["shrimp", "corn tortillas", "cabbage", "lime", "sour cream"]),
    "Pork Chops": ("fry", ["pork chops", "apples", "onion", "thyme", "butter"]),
    "Pancakes": ("fry", ["all-purpose flour", "milk", "eggs", "baking powder", "maple syrup"]),
    "Omelette": ("fry", ["eggs", "milk", "ham", "cheddar cheese", "green onions"]),
}
# flavour: (title word, ingredient); the first len(FLAVOURS) factors, a recipe's strongest named in its title
FLAVOURS = [
    ("Spicy", "red pepper flakes"), ("Garlic", "garlic cloves"), ("Lemon", "lemon zest"),
    ("Honey", "honey"), ("Smoky", "smoked paprika"), ("Herbed", "fresh thyme"),
    ("Cheesy", "shredded cheddar"), ("Creamy", "heavy cream"), ("Maple", "maple syrup"),
    ("Ginger", "fresh ginger"), ("Coconut", "shredded coconut"), ("Cajun", "cajun seasoning"),
    ("Bacon", "bacon"), ("Mexican", "ground cumin"), ("Italian", "italian seasoning"),
    ("Curried", "curry powder"), ("Balsamic", "balsamic vinegar"), ("Sesame", "sesame oil"),
    ("Peanut", "peanut butter"), ("Cinnamon", "ground cinnamon"), ("Vanilla", "vanilla extract"),
    ("Minty", "fresh mint"), ("Chipotle", "chipotle peppers"), ("Orange", "orange zest"),
]
METHOD_STEPS = {
    "bake": ["Preheat the oven to 350F and grease a pan.", "Mix the {0} and the {1} in a large bowl.",
             "Bake for {t} minutes, until golden and set."],
    "simmer": ["Brown the {0} in a large pot.", "Add the {1} and the {2} and bring to a boil.",
               "Cover and simmer for {t} minutes, stirring now and then."],
    "toss": ["Chop the {0} and the {1}.", "Whisk the dressing and toss everything together.",
             "Chill for {t} minutes before serving."],
    "blend": ["Put the {0} and the {1} in a blender.", "Blend until smooth, about {t} seconds."],
    "boil": ["Boil the {0} in salted water for {t} minutes and drain.", "Stir in the {1} and the {2}."],
    "grill": ["Heat the grill to medium-high.", "Season the {0} and brush with {1}.",
              "Grill for {t} minutes, turning once."],
    "roast": ["Preheat the oven to 425F.", "Rub the {0} with the {1} and the {2}.",
              "Roast for {t} minutes, until browned."],
    "stir-fry": ["Heat oil in a wok over high heat.", "Stir-fry the {0} for {t} minutes.",
                 "Add the {1} and the {2} and toss to coat."],
    "fry": ["Heat butter in a skillet over medium heat.", "Cook the {0} for {t} minutes on each side.",
            "Serve with the {1}."],
}
UNITS = ["1 cup", "2 cups", "1/2 cup", "1 tablespoon", "2 tablespoons", "1 teaspoon", "8 ounces", "1 pound", "3"]
TITLE_FORMS = ["{f} {d}", "{f} {d}", "{d} with {i}", "Easy {f} {d}", "{f} {g} {d}"]
_STREAM = {"world": 0, "plan": 1, "words": 2, "image": 3, "text": 4}  # independent random streams


@dataclass
class _Split:
    name: str
    recipe_ids: list[str]
    photo_ids: list[list[str]]
    dish: np.ndarray  # index into DISHES, per recipe
    flavours: np.ndarray  # (n, 2): the recipe's two strongest flavour factors
    z: np.ndarray  # (n, N_FACTORS) float32: the dish centroid plus the recipe's own factors


def split_sizes(scale: float = 1.0) -> dict[str, int]:
    """Recipes per split at this scale (never fewer than MIN_RECIPES)."""
    return {s: max(MIN_RECIPES, int(round(n * scale))) for s, n in SIZES.items()}


def generate(dest: str | Path, scale: float = 1.0, seed: int = 0, progress: bool = True) -> Path:
    """Write the corpus (layer1.json, layer2.json, given/) to ``dest``, replaced atomically, and return it."""
    dest = Path(dest)
    world = _World(seed)
    splits = _plan(split_sizes(scale), seed, world)
    with atomic_dir(dest) as tmp:
        _write_layers(tmp, splits, seed)
        given = tmp / "given"
        given.mkdir()
        for split in splits:
            _write_given(given, split, world, seed, progress)
    return dest


def ensure(cache_dir: str | Path, scale: float = 1.0, seed: int = 0, progress: bool = True) -> Path:
    """The corpus for these settings under ``<cache_dir>/synthetic/``, generated once per cache."""
    root = Path(cache_dir) / "synthetic" / key(float(scale), seed, VERSION)  # scale 1 and 1.0 are one corpus
    return built(root, lambda dest: generate(dest, scale, seed, progress), done=root / "layer2.json")


class _World:
    """The fixed maps of a seed: dish centroids, factor-to-feature matrices and each view's nuisance."""

    def __init__(self, seed: int):
        rng = np.random.default_rng([seed, _STREAM["world"]])
        self.centroids = (DISH_SPREAD * STRENGTHS * rng.standard_normal((len(DISHES), N_FACTORS))).astype(np.float32)
        self.dish_p = 1 / (np.arange(len(DISHES)) + 8.0)  # a mildly Zipfian mix of dishes
        self.dish_p /= self.dish_p.sum()
        self.image_map = _unit_rows(rng, N_FACTORS, IMAGE_DIM)
        self.image_nuisance = IMAGE_NUISANCE * _unit_rows(rng, IMAGE_NUISANCE_RANK, IMAGE_DIM)
        self.text_map, self.text_nuisance, self.text_mask = {}, {}, {}
        for kind, (seen, nuisance, _) in TEXT_VIEWS.items():
            rest = N_FACTORS - len(FLAVOURS)
            mask = np.zeros(N_FACTORS, np.float32)
            mask[:len(FLAVOURS)] = 1
            mask[len(FLAVOURS) + rng.permutation(rest)[:int(round(seen * rest))]] = 1
            self.text_mask[kind] = mask
            self.text_map[kind] = _unit_rows(rng, N_FACTORS, TEXT_DIM)
            self.text_nuisance[kind] = nuisance * _unit_rows(rng, TEXT_NUISANCE_RANK, TEXT_DIM)


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """A random (n, d) float32 matrix whose rows have unit norm."""
    M = rng.standard_normal((n, d), dtype=np.float32)
    return M / np.linalg.norm(M, axis=1, keepdims=True)


def _plan(sizes: dict[str, int], seed: int, world: _World) -> list[_Split]:
    """Ids, photo counts, dishes and latent vectors of every recipe."""
    rng = np.random.default_rng([seed, _STREAM["plan"]])
    n_photos = {s: 1 + np.minimum(rng.poisson(MEAN_EXTRA_PHOTOS, n), MAX_PHOTOS - 1) for s, n in sizes.items()}
    ids = iter(_unique_hex(rng, sum(sizes.values()) + sum(int(c.sum()) for c in n_photos.values())))
    out = []
    for s, n in sizes.items():
        dish = rng.choice(len(DISHES), size=n, p=world.dish_p)
        own = rng.standard_normal((n, N_FACTORS), dtype=np.float32)
        z = world.centroids[dish] + own * STRENGTHS
        flavours = np.argsort(-own[:, :len(FLAVOURS)], axis=1)[:, :2]
        recipe_ids = [next(ids) for _ in range(n)]
        photo_ids = [[next(ids) + ".jpg" for _ in range(k)] for k in n_photos[s]]
        out.append(_Split(s, recipe_ids, photo_ids, dish, flavours, z))
    return out


def _unique_hex(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct ids of 10 lowercase hex characters, like Recipe1M's."""
    values = np.zeros(0, np.int64)
    while len(values) < n:
        more = np.concatenate([values, rng.integers(0, 16 ** 10, n - len(values) + 16)])
        _, first = np.unique(more, return_index=True)
        values = more[np.sort(first)]
    return [f"{v:010x}" for v in values[:n]]


def _write_layers(root: Path, splits: list[_Split], seed: int) -> None:
    """layer1.json (recipes with text) and layer2.json (their image ids), one recipe at a time."""
    dishes = list(DISHES)
    with open(root / "layer1.json", "w") as f1, open(root / "layer2.json", "w") as f2:
        sep = "["
        for split in splits:
            rng = np.random.default_rng([seed, _STREAM["words"], list(SIZES).index(split.name)])
            n = len(split.recipe_ids)
            forms = rng.integers(len(TITLE_FORMS), size=n)
            units = rng.integers(len(UNITS), size=(n, 7))
            minutes = 5 * rng.integers(2, 12, size=n)
            for i, rid in enumerate(split.recipe_ids):
                dish = dishes[split.dish[i]]
                method, main = DISHES[dish]
                (f, fi), (g, gi) = (FLAVOURS[j] for j in split.flavours[i])
                title = TITLE_FORMS[forms[i]].format(f=f, g=g, d=dish, i=fi.title())
                ingredients = [f"{UNITS[u]} {name}" for u, name in zip(units[i], [*main, fi, gi])]
                steps = [s.format(*main, t=minutes[i]) for s in METHOD_STEPS[method]]
                steps.append(f"Finish with the {fi} and the {gi}, season to taste and serve.")
                f1.write(sep + json.dumps({
                    "id": rid, "title": title, "ingredients": [{"text": t} for t in ingredients],
                    "instructions": [{"text": t} for t in steps], "partition": split.name, "url": ""}))
                f2.write(sep + json.dumps({"id": rid, "images": [{"id": p, "url": ""} for p in split.photo_ids[i]]}))
                sep = ",\n"
        f1.write("]\n")  # every split has recipes, so the arrays were opened
        f2.write("]\n")


def _write_given(folder: Path, split: _Split, world: _World, seed: int, progress: bool) -> None:
    """The split's image file (every photo for train, the first one otherwise) and its four text files."""
    all_photos = split.name == "train"
    photos = [p if all_photos else p[:1] for p in split.photo_ids]
    image_ids = [p for ps in photos for p in ps]
    _write(folder / f"image_{split.name}", image_ids, IMAGE_DIM,
           _image_blocks(split, world, seed, all_photos), progress)
    for kind in TEXT_KINDS:
        _write(folder / f"text_{kind}_{split.name}", split.recipe_ids, TEXT_DIM,
               _text_blocks(split, world, seed, kind), progress)


def _write(stem: Path, ids: list[str], dim: int, blocks, progress: bool) -> None:
    """``<stem>.npy`` from row blocks, with a progress bar in rows, and its ids in ``<stem>.ids.txt``."""
    with progress_bar(total=len(ids), desc=stem.name, unit="row", unit_scale=True, disable=not progress) as pb:
        def counted():
            for block in blocks:
                yield block
                pb.update(len(block))
        write_npy(stem.with_suffix(".npy"), (len(ids), dim), counted())
    stem.with_suffix(".ids.txt").write_text("".join(i + "\n" for i in ids))


def _image_blocks(split: _Split, world: _World, seed: int, all_photos: bool):
    """Image feature rows, BLOCK recipes at a time: every photo of each recipe, or only its first."""
    k = list(SIZES).index(split.name)
    for b, start in enumerate(range(0, len(split.recipe_ids), BLOCK)):
        rng = np.random.default_rng([seed, _STREAM["image"], k, b])
        stop = min(start + BLOCK, len(split.recipe_ids))
        counts = np.array([len(p) if all_photos else 1 for p in split.photo_ids[start:stop]])
        z = np.repeat(split.z[start:stop], counts, axis=0)
        n = len(z)
        z += PHOTO_JITTER * STRENGTHS * rng.standard_normal((n, N_FACTORS), dtype=np.float32)
        X = z @ world.image_map
        X += rng.standard_normal((n, IMAGE_NUISANCE_RANK), dtype=np.float32) @ world.image_nuisance
        X += IMAGE_NOISE * rng.standard_normal((n, IMAGE_DIM), dtype=np.float32)
        yield X


def _text_blocks(split: _Split, world: _World, seed: int, kind: str):
    """Text feature rows of one kind, BLOCK recipes at a time: the dish and the kind's factors, plus noise."""
    k = list(SIZES).index(split.name)
    _, _, noise = TEXT_VIEWS[kind]
    for b, start in enumerate(range(0, len(split.recipe_ids), BLOCK)):
        rng = np.random.default_rng([seed, _STREAM["text"], k, b, TEXT_KINDS.index(kind)])
        stop = min(start + BLOCK, len(split.recipe_ids))
        centroid = world.centroids[split.dish[start:stop]]
        own = split.z[start:stop] - centroid
        T = (centroid + own * world.text_mask[kind]) @ world.text_map[kind]
        T += rng.standard_normal((stop - start, TEXT_NUISANCE_RANK), dtype=np.float32) @ world.text_nuisance[kind]
        T += noise * rng.standard_normal((stop - start, TEXT_DIM), dtype=np.float32)
        yield T
