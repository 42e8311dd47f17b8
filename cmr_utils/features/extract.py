"""The extraction stage (notebook 01): every split's photos and text kinds encoded and cached; writes ``features.json``.

The notebook builds the stage's objects from its parameters (``Corpus``, ``TextKinds``, ``Encoders``,
``Given``) and hands them to ``run``; ``extract`` does the same from the parameters' flat names. The
encoders (torch) are imported when they are built, so reading a run's features needs no torch.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmr_utils.cluster import connect, describe
from cmr_utils.data import demo, synthetic
from cmr_utils.data import given as given_files
from cmr_utils.data.recipe1m import SPLITS, TEXT_KINDS, Recipe1M
from cmr_utils.features import lexical
from cmr_utils.features.store import image_features, text_features
from cmr_utils.io import save_csv, save_json
from cmr_utils.run_dir import CONCAT_PARTS, RunDir, as_run


@dataclass
class Corpus:
    """Where recipes and photos come from: a Recipe1M-layout ``data_dir``; None, the demo corpus generated
    once into the cache (``demo_recipes``, ``demo_seed``); ``synthetic_scale`` (1.0: Recipe1M's size), a
    corpus without photos whose given features share planted factors (``synthetic``)."""
    data_dir: str | Path | None = None
    demo_recipes: int = 3000
    demo_seed: int = 0
    synthetic_scale: float | None = None
    ingredients: str = "raw"  # or "detected": the names in det_ingrs.json

    @property
    def photos(self) -> bool:  # a synthetic corpus lists photos it does not have (its features are given)
        return self.synthetic_scale is None

    def open(self, cache_dir, progress=True) -> tuple[Path, Recipe1M, Path | None]:
        """(root, its recipes, the folder of given features it comes with: a synthetic corpus's, else None)."""
        if self.synthetic_scale is not None:
            root = synthetic.ensure(cache_dir, self.synthetic_scale, self.demo_seed, progress)
            return root, Recipe1M(root, self.ingredients, need_files=False), root / "given"
        root = Path(self.data_dir) if self.data_dir else demo.ensure(cache_dir, self.demo_recipes, self.demo_seed)
        return root, Recipe1M(root, self.ingredients, need_files=True), None


@dataclass
class TextKinds:
    """The text kinds to extract. ``concat`` is the ``concat_parts`` kinds' features side by side; ``lexical``
    (also a part) is a TF-IDF bag of the ``lexical_parts`` kinds' words (and word pairs with ``lexical_ngrams``
    2) reduced to ``lexical_dims`` components, fitted on train's text (see ``lexical``)."""
    kinds: list[str] | tuple[str, ...] = ("title",)
    concat_parts: list[str] | tuple[str, ...] = CONCAT_PARTS
    lexical_dims: int = 256
    lexical_parts: list[str] | tuple[str, ...] = lexical.PARTS
    lexical_ngrams: int = 1

    def __post_init__(self):
        known = (*TEXT_KINDS, lexical.KIND)
        unknown = set(self.kinds) - set(known) - {"concat"}
        if unknown:
            raise ValueError(f"unknown text kinds {sorted(unknown)}; choose from {known + ('concat',)}")
        parts = self.concat_parts
        if not parts or set(parts) - set(known) or len(set(parts)) < len(parts):
            raise ValueError(f"concat_parts must be distinct text kinds from {known}, got {list(parts)}")
        self.concat_parts = list(parts)

    @property
    def base(self) -> list[str]:  # the kinds computed on their own: ``concat`` stands for its parts
        return list(dict.fromkeys(k for kind in self.kinds for k in (self.concat_parts if kind == "concat" else [kind])))


@dataclass
class TextSettings:
    """The text encoder (``text.TextEncoder``): model ``name``, hidden ``layer`` (None: the model's own),
    ``pooling``; ``windows=False`` truncates long texts instead (an ablation)."""
    name: str = "minilm"
    layer: int | None = None
    pooling: str = "mean"
    windows: bool = True


@dataclass
class ImageSettings:
    """The image encoder (``images.ImageEncoder``): backbone ``name``, its ``weights`` file (None: bundled or
    the torch cache), the ``views`` averaged per photo; ``normalization='imagenet'`` is an ablation."""
    name: str = "efficientnet-lite0"
    weights: str | None = None
    views: int = 1
    normalization: str = "own"


@dataclass
class Runtime:
    """Where and how encoding runs: batches, DataLoader workers, ``device`` (None: CUDA when there is one),
    the ``backend`` and ``precision`` (see ``runtimes``), and a Dask ``cluster`` spreading every entry's shards."""
    batch_size: int = 32
    num_workers: int = 2
    device: str | None = None
    backend: str = "auto"
    precision: str = "float32"
    cluster: str | None = None


@dataclass
class Encoders:
    """The text and image encoders' settings and the runtime they share."""
    text: TextSettings = field(default_factory=TextSettings)
    image: ImageSettings = field(default_factory=ImageSettings)
    runtime: Runtime = field(default_factory=Runtime)

    def build(self, cache_dir):
        """(image encoder, text encoder), loaded: the one place extraction imports torch."""
        from cmr_utils.features.images import ImageEncoder
        from cmr_utils.features.text import TextEncoder
        r, i, t = self.runtime, self.image, self.text
        images = ImageEncoder(i.name, i.weights, r.batch_size, r.num_workers, r.device, i.views, i.normalization,
                              r.backend, r.precision, cache_dir)
        texts = TextEncoder(t.name, t.layer, t.pooling, batch_size=r.batch_size, device=r.device, cache_dir=cache_dir,
                            windows=t.windows, backend=r.backend, precision=r.precision)
        return images, texts


@dataclass
class Given:
    """A ``folder`` of the user's feature files (see ``given``) to use instead of the encoders; None: encode.
    Pickles are read only with ``allow_pickle``: unpickling runs any code in the file."""
    folder: str | Path | None = None
    allow_pickle: bool = False


def run(run_dir, cache_dir, corpus: Corpus | None = None, kinds: TextKinds | None = None,
        encoders: Encoders | None = None, given: Given | None = None, progress=True) -> dict:
    """Encode every split's images and text ``kinds`` of the ``corpus`` (cached), write ``features.json`` and
    return it. With a ``given`` folder (or a synthetic corpus's own) vectors come from its files instead of
    the ``encoders``."""
    corpus, kinds, encoders, given = corpus or Corpus(), kinds or TextKinds(), encoders or Encoders(), given or Given()
    root, ds, own_given = corpus.open(cache_dir, progress)
    given_dir = given.folder or own_given
    base, fingerprint = kinds.base, ds.fingerprint()
    with connect(encoders.runtime.cluster) as client:
        if given_dir:
            described = {"image": {"name": "given"}, "text": {"name": "given"}}
            image_of = lambda split: given_files.import_features(  # noqa: E731
                ds, split, given_files.find(given_dir, f"image_{split}"), cache_dir, fingerprint, "image",
                all_images=(split == "train"), progress=progress, allow_pickle=given.allow_pickle)
            text_of = lambda split, kind: given_files.import_features(  # noqa: E731
                ds, split, given_files.find(given_dir, f"text_{kind}_{split}"), cache_dir, fingerprint, "text", kind,
                progress=progress, allow_pickle=given.allow_pickle)
        else:
            images, texts = encoders.build(cache_dir)
            described = {"image": images.config, "text": texts.config}
            image_of = lambda split: image_features(  # noqa: E731
                ds, split, images, cache_dir, fingerprint, all_images=(split == "train"), progress=progress,
                client=client)
            text_of = lambda split, kind: text_features(  # noqa: E731
                ds, split, kind, texts, cache_dir, fingerprint, progress, client)
        lexical_of, lexical_model = ({}, None) if lexical.KIND not in base else \
            lexical.features(ds, cache_dir, kinds.lexical_dims, kinds.lexical_parts, kinds.lexical_ngrams)
        manifest = {"data": {"root": str(root), "fingerprint": fingerprint, "ingredients": corpus.ingredients,
                             "photos": corpus.photos, "counts": ds.counts().reset_index().to_dict("records")},
                    "source": "given" if given_dir else "generated", "encoders": described,
                    "cluster": describe(client), "image": {}, "text": {k: {} for k in kinds.kinds},
                    "concat_parts": kinds.concat_parts}
        if lexical_model:
            described["lexical"] = lexical.config(kinds.lexical_dims, kinds.lexical_parts, kinds.lexical_ngrams)
            manifest["lexical_model"] = str(lexical_model)
        entries = {}  # what -> {split: entry}
        for split in SPLITS:
            manifest["image"][split] = entries.setdefault("image", {})[split] = str(image_of(split))
            done = {kind: str(lexical_of[split] if kind == lexical.KIND else text_of(split, kind)) for kind in base}
            for kind in kinds.kinds:
                manifest["text"][kind][split] = [done[k] for k in kinds.concat_parts] if kind == "concat" else done[kind]
            for kind, entry in done.items():
                if kind != lexical.KIND:  # the lexical view is computed here, never given
                    entries.setdefault(f"text {kind}", {})[split] = entry
        if given_dir:
            given_files.check_widths(entries)
    save_json(Path(run_dir) / "features.json", manifest)
    save_csv(Path(run_dir) / "skipped.csv", RunDir(run_dir).skipped_table(ds))
    return manifest


def extract(run_dir, cache_dir, data_dir=None, demo_recipes=3000, demo_seed=0, synthetic_scale=None,
            text_encoder="minilm", image_encoder="efficientnet-lite0", image_weights=None, text_kinds=("title",),
            batch_size=32, num_workers=2, device=None, text_layer=None, text_pooling="mean", given_dir=None,
            ingredients="raw", image_views=1, image_normalization="own", text_windows=True, cluster=None,
            backend="auto", precision="float32", given_allow_pickle=False, concat_parts=CONCAT_PARTS,
            lexical_dims=256, lexical_parts=lexical.PARTS, lexical_ngrams=1, progress=True) -> dict:
    """``run`` from the notebook's parameter names (the notebook's defaults): for tests and scripts."""
    kinds = TextKinds(text_kinds, concat_parts, lexical_dims, lexical_parts, lexical_ngrams)
    encoders = Encoders(TextSettings(text_encoder, text_layer, text_pooling, text_windows),
                        ImageSettings(image_encoder, image_weights, image_views, image_normalization),
                        Runtime(batch_size, num_workers, device, backend, precision, cluster))
    return run(run_dir, cache_dir, Corpus(data_dir, demo_recipes, demo_seed, synthetic_scale, ingredients), kinds,
               encoders, Given(given_dir, given_allow_pickle), progress)


def embed_texts(run_dir, texts: list[str], kind: str):
    """Text features of free text for one text kind, as the run's extraction made them: the neural encoder's
    (model, layer, pooling), the fitted lexical model's for ``lexical``, and for ``concat`` each part's side by
    side (the text standing for every part)."""
    run = as_run(run_dir)
    manifest, parts = run.manifest, run.concat_kinds if kind == "concat" else [kind]
    if any(p != lexical.KIND for p in parts):
        cfg = manifest["encoders"]["text"]
        if cfg["name"] == "given":
            raise ValueError("this run uses given text features: there is no encoder for free text")
        from cmr_utils.features.text import TextEncoder  # torch loads for a text query only
        neural = encoder_like(TextEncoder, json.dumps(cfg, sort_keys=True), cache_dir=str(run.cache)).encode(
            texts, progress=False)
    lex = lexical.Lexical.load(manifest["lexical_model"]) if lexical.KIND in parts else None
    return np.hstack([lex.transform(texts) if p == lexical.KIND else neural for p in parts])


@functools.lru_cache(maxsize=4)
def encoder_like(cls, config: str, **kwargs):
    """``cls.like`` the encoder a run's features.json describes (JSON ``config``), loaded once per process and
    without the loading bar: loading takes seconds, a query's forward pass a few milliseconds."""
    from transformers.utils import logging as hf_logging
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return cls.like(json.loads(config), **kwargs)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
