"""Photo decoding: any readable image file to upright 8-bit RGB, or a short reason why not.

The encoders' DataLoader workers, the example grids and the space page all read photos through
``load_image``; it needs PIL and numpy only, so the report side decodes photos without torch.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_IMAGE_SIDE = 8  # smaller images carry no usable content after resizing to 224


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
