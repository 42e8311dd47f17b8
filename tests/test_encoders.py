import io

import numpy as np
import pytest
import torch
from PIL import Image

from cmr_utils.encoders import ImageEncoder, TextEncoder, load_image


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


def test_text_encoding_does_not_depend_on_batching(text_encoder):
    texts = ["tomato soup", "a much longer recipe text " * 20, "", "basil", "grilled salmon with lemon and dill"]
    together = text_encoder.encode(texts, progress=False)
    alone = np.vstack([text_encoder.encode([t], progress=False) for t in texts])
    assert together.shape == (5, 384) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=2e-5)  # padding is masked out of the mean


def test_text_encoder_layer_and_pooling_change_vectors(text_encoder):
    last = TextEncoder("minilm", layer=-1)
    cls = TextEncoder("minilm", pooling="cls")
    t = ["chocolate cake with raspberries"]
    base = text_encoder.encode(t, progress=False)
    assert not np.allclose(base, last.encode(t, progress=False))
    assert not np.allclose(base, cls.encode(t, progress=False))
    assert text_encoder.config != last.config != cls.config


def test_text_encoder_truncates_at_max_length():
    short = TextEncoder("minilm", max_length=8)
    long_text = "word " * 600
    a = short.encode([long_text], progress=False)
    b = short.encode([long_text + "different ending"], progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)


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
