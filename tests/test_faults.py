"""Fault injection on a copy of the real sample: every fault is skipped with its reason or stops with a clear error."""
import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cmr_utils.data import given
from cmr_utils.features import store as F
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.data.photos import load_image
from cmr_utils.features.images import ImageEncoder


def png_header_only(width, height):
    """A PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb's calling card."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def faulty(shared_root, tmp_path_factory):
    """A copy of the shared sample with one of each fault added; returns (root, what was planted)."""
    root = tmp_path_factory.mktemp("faulty") / "sample"
    shutil.copytree(shared_root, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # the shared copy is read-only
    layer1 = json.loads((root / "layer1.json").read_text())
    layer2 = json.loads((root / "layer2.json").read_text())
    val = [r["id"] for r in layer1 if r["partition"] == "val"]
    deep, bomb = "ffff16bitdeep.png", "bbbbdecompressionbomb.png"
    grey = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    for im, recipe in ((deep, val[0]), (bomb, val[1])):
        path = root / "images" / "val" / im[0] / im[1] / im[2] / im[3] / im
        path.parent.mkdir(parents=True, exist_ok=True)
        if im == deep:
            Image.fromarray(grey).save(path)
        else:
            path.write_bytes(png_header_only(40000, 40000))
        entry = next(e for e in layer2 if e["id"] == recipe)
        entry["images"].insert(0, {"id": im})  # the first photo of a val recipe
    outside = root / "secret.jpg"
    shutil.copy(next((root / "images").rglob("*.jpg")), outside)
    layer2[2]["images"].insert(0, {"id": "../../../secret.jpg"})
    layer1.append({"title": "No id", "ingredients": [], "instructions": [], "partition": "train"})
    (root / "layer1.json").write_text(json.dumps(layer1))
    (root / "layer2.json").write_text(json.dumps(layer2))
    return root, {"deep": (deep, val[0], grey), "bomb": (bomb, val[1]), "unsafe": "../../../secret.jpg"}


def test_loader_skips_unsafe_ids_and_recipes_without_id(faulty):
    root, planted = faulty
    ds = Recipe1M(root)
    skipped = ds.skipped
    unsafe = skipped[skipped.id == planted["unsafe"]]
    assert len(unsafe) == 1 and "unsafe" in unsafe.reason.iloc[0]
    assert all(planted["unsafe"] not in r.images for r in ds.recipes.values())
    assert skipped.reason.str.contains("without id").sum() == 1


def test_deep_images_are_scaled_and_bombs_skipped(faulty, tmp_path):
    root, planted = faulty
    ds = Recipe1M(root)
    deep, deep_recipe, grey = planted["deep"]
    bomb, bomb_recipe = planted["bomb"]
    decoded = np.asarray(load_image(ds.image_path("val", deep)).convert("L"), dtype=float)
    np.testing.assert_allclose(decoded, grey / 257, atol=1.5)  # scaled, not clipped to white
    feats = F.Features.load(F.image_features(ds, "val", ImageEncoder(num_workers=0), tmp_path, ds.fingerprint(),
                                             all_images=False, progress=False))
    used = dict(zip(feats.index.recipe_id, feats.index.image_id))
    assert used[deep_recipe] == deep
    assert used[bomb_recipe] != bomb  # fell back to the recipe's next photo
    reasons = dict(zip(feats.skipped.id, feats.skipped.reason))
    assert "decompression bomb" in reasons[bomb]


def test_nan_in_given_features_names_the_file(faulty, tmp_path):
    root, _ = faulty
    ds = Recipe1M(root)
    ids = [r.id for r in ds.split("val")]
    X = np.ones((len(ids), 5), np.float32)
    X[3] = np.nan
    np.savez(tmp_path / "image_val.npz", ids=np.array(ids), X=X)
    with pytest.raises(ValueError, match=rf"image_val\.npz: 1 of {len(ids)} rows contain NaN.*{ids[3]}"):
        given.import_features(ds, "val", tmp_path / "image_val.npz", tmp_path / "cache", ds.fingerprint(), "image")


def test_malformed_layer2_names_the_file_and_offset(faulty, tmp_path):
    root, _ = faulty
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "layer1.json").symlink_to(root / "layer1.json")
    (broken / "images").symlink_to(root / "images")
    text = (root / "layer2.json").read_text()
    cut = text.index("},", len(text) // 2) + 1
    (broken / "layer2.json").write_text(text[:cut] + text[cut + 1:])  # a missing comma mid-file
    with pytest.raises(ValueError, match=r"layer2\.json.*byte (\d+)") as e:
        Recipe1M(broken)
    offset = int(__import__("re").search(r"byte (\d+)", str(e.value)).group(1))
    assert abs(offset - len(text[:cut].encode())) <= 1 << 16  # near the fault, within one read buffer
