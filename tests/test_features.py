import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import HashEncoder

from cmr_utils.features import store as F
from cmr_utils.data.recipe1m import Recipe1M


@pytest.fixture
def corpus(demo_root, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(demo_root, root)
    return Recipe1M(root)


def test_text_features_cached_and_skip_empty_text(corpus, tmp_path):
    rid = corpus.split("val")[0].id
    corpus.recipes[rid].instructions = []
    enc = HashEncoder()
    path = F.text_features(corpus, "val", "instructions", enc, tmp_path / "c", "fp")
    feats = F.Features.load(path)
    assert rid not in set(feats.index.recipe_id)
    assert feats.skipped.values.tolist() == [[rid, "empty instructions"]]
    assert feats.X.shape == (len(corpus.split("val")) - 1, 4) and feats.X.dtype == np.float32
    calls = enc.calls
    assert F.text_features(corpus, "val", "instructions", enc, tmp_path / "c", "fp") == path
    assert enc.calls == calls
    assert F.text_features(corpus, "val", "instructions", enc, tmp_path / "c", "other data") != path


def test_first_readable_image_falls_back_to_the_next(corpus, tmp_path):
    multi = [r for r in corpus.split("train") if len(r.images) > 1][0]
    corpus.recipes[multi.id].partition = "test"  # reuse a multi-photo recipe as a test recipe
    for im in multi.images:
        dst = corpus.image_path("test", im)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus.image_path("train", im), dst)
    corpus.image_path("test", multi.images[0]).write_bytes(b"")
    path = F.image_features(corpus, "test", HashEncoder(), tmp_path / "c", "fp", all_images=False)
    feats = F.Features.load(path)
    row = feats.index[feats.index.recipe_id == multi.id]
    assert row.image_id.tolist() == [multi.images[1]]
    assert [multi.images[0], "empty file"] in feats.skipped.values.tolist()
    assert feats.index.recipe_id.tolist() == [r.id for r in corpus.split("test")]  # file order kept


def test_interrupted_extraction_resumes_to_identical_result(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(F, "SHARD_SIZE", 7)
    full = F.Features.load(F.image_features(corpus, "train", HashEncoder(), tmp_path / "a", "fp", all_images=True))
    with pytest.raises(KeyboardInterrupt):
        F.image_features(corpus, "train", HashEncoder(fail_after=2), tmp_path / "b", "fp", all_images=True)
    assert not list((tmp_path / "b" / "features").glob("*/X.npy"))  # no half-written entry
    resumed_enc = HashEncoder()
    resumed = F.Features.load(F.image_features(corpus, "train", resumed_enc, tmp_path / "b", "fp", all_images=True))
    n = sum(len(r.images) for r in corpus.split("train"))
    assert resumed_enc.seen == n - 14  # the two finished shards were not encoded again
    np.testing.assert_array_equal(resumed.X, full.X)
    assert resumed.index.equals(full.index)


def test_paired_aligns_rows_by_recipe(corpus, tmp_path):
    enc = HashEncoder()
    img = F.Features.load(F.image_features(corpus, "train", enc, tmp_path, "fp", all_images=True))
    corpus.recipes[corpus.split("train")[0].id].title = ""
    txt = F.Features.load(F.text_features(corpus, "train", "title", enc, tmp_path, "fp"))
    X, Y, index = F.paired(img, txt)
    assert len(X) == len(Y) == len(index) == len(img.X) - len(corpus.split("train")[0].images)
    for i in range(len(index)):
        np.testing.assert_array_equal(Y[i], enc._vec(corpus.recipes[index.recipe_id[i]].title))
        np.testing.assert_array_equal(X[i], enc._vec(index.image_id[i]))


def test_concat_joins_kinds_for_recipes_that_have_all(corpus, tmp_path):
    enc = HashEncoder()
    rid = corpus.split("val")[1].id
    corpus.recipes[rid].title = ""
    parts = [F.Features.load(F.text_features(corpus, "val", k, enc, tmp_path, "fp"))
             for k in ("title", "ingredients")]
    both = F.concat(parts)
    assert both.X.shape == (len(corpus.split("val")) - 1, 8)
    assert rid not in set(both.index.recipe_id) and rid in set(both.skipped.id)
    r = corpus.recipes[both.index.recipe_id[0]]
    np.testing.assert_array_equal(both.X[0], np.concatenate([enc._vec(r.text("title")), enc._vec(r.text("ingredients"))]))


KILL_SCRIPT = """
import sys, cmr_utils.features.store as F
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.features.images import ImageEncoder
F.SHARD_SIZE = 8
ds, enc, seen = Recipe1M(sys.argv[1]), ImageEncoder(num_workers=0, batch_size=8), []
encode = enc.encode
enc.encode = lambda paths, progress: seen.append(len(paths)) or encode(paths, progress)
print(F.image_features(ds, "train", enc, sys.argv[2], "fp", all_images=True, progress=False), sum(seen))
"""


def test_killed_extraction_process_resumes_byte_identical(demo_root, tmp_path):
    """A real extraction process is killed (SIGKILL) after its first shards; a rerun finishes the rest."""
    import subprocess
    import sys
    import time
    script = tmp_path / "extract.py"
    script.write_text(KILL_SCRIPT)
    full, n_full = subprocess.run([sys.executable, script, demo_root, tmp_path / "a"], capture_output=True,
                                  text=True, check=True).stdout.split()
    proc = subprocess.Popen([sys.executable, script, demo_root, tmp_path / "b"])
    deadline = time.time() + 300
    while not len(list((tmp_path / "b" / "features").glob("*.parts/[!.]*.npz"))) >= 2:
        assert proc.poll() is None and time.time() < deadline, "extraction ended before it could be killed"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished = list((tmp_path / "b" / "features").glob("*.parts/[!.]*.npz"))
    n_shards = -(-sum(len(r.images) for r in Recipe1M(demo_root).split("train")) // 8)
    assert 2 <= len(finished) < n_shards and not list((tmp_path / "b" / "features").glob("*/X.npy"))
    resumed, n_resumed = subprocess.run([sys.executable, script, demo_root, tmp_path / "b"], capture_output=True,
                                        text=True, check=True).stdout.split()
    for name in ("X.npy", "index.csv", "skipped.csv", "meta.json"):
        assert (Path(full) / name).read_bytes() == (Path(resumed) / name).read_bytes(), name
    assert int(n_resumed) == int(n_full) - 8 * len(finished)  # the finished shards were not encoded again


def test_replacing_a_photo_changes_the_entry(corpus, tmp_path):
    """The data fingerprint covers the JSON only: the image entry's key must cover the files too."""
    enc = HashEncoder()
    first = F.image_features(corpus, "val", enc, tmp_path, "fp", all_images=False)
    r = corpus.split("val")[0]
    path = corpus.image_path("val", r.images[0])
    path.write_bytes(path.read_bytes() + b"\0")  # same name, new content
    assert F.image_features(corpus, "val", enc, tmp_path, "fp", all_images=False) != first


def test_resumed_shards_are_checked_against_their_items(corpus, tmp_path, monkeypatch):
    """A finished shard computed for other items (the list changed meanwhile) is encoded again."""
    monkeypatch.setattr(F, "SHARD_SIZE", 4)
    enc = HashEncoder()
    items = [(r.id, r.text("title")) for r in corpus.split("train")][:8]
    dest = tmp_path / "entry"
    F._sharded(dest, "t", items, [t for _, t in items], enc, progress=False)
    shuffled = items[4:] + items[:4]
    files, _ = F._sharded(dest, "t", shuffled, [t for _, t in shuffled], enc, progress=False)
    X = np.concatenate(list(F._blocks(files, {})))
    np.testing.assert_array_equal(X, np.array([enc._vec(t) for _, t in shuffled], np.float32))


def test_non_finite_features_stop_the_extraction_naming_the_items(corpus, tmp_path):
    class NaNEncoder(HashEncoder):
        def encode(self, items, progress=True):
            X = super().encode(items, progress)
            X[1] = np.nan
            return X

    with pytest.raises(ValueError, match="NaN or infinite") as e:
        F.text_features(corpus, "val", "title", NaNEncoder(), tmp_path, "fp")
    assert corpus.split("val")[1].id in str(e.value)


def test_extract_hands_the_ablation_switches_to_the_encoders(demo_root, tmp_path, monkeypatch):
    from cmr_utils.features import extract as extraction, images, text
    built = {}

    class Built(Exception):
        pass

    def image_encoder(*args):
        built["image"] = args

    def text_encoder(*args, **kwargs):
        built["text"] = kwargs
        raise Built  # both built: nothing to encode for this test

    monkeypatch.setattr(images, "ImageEncoder", image_encoder)
    monkeypatch.setattr(text, "TextEncoder", text_encoder)
    with pytest.raises(Built):
        extraction.extract(tmp_path / "run", tmp_path / "cache", demo_root, image_normalization="imagenet",
                       text_windows=False, progress=False)
    assert "imagenet" in built["image"] and built["text"]["windows"] is False
