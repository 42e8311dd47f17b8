"""Trust at the edges: messy or hostile inputs are skipped with a reason or stop with a message naming them;
nothing read from a download, a given-features folder or a cache runs code; stale results are never reused."""
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import HashEncoder, make_given, vec, write

from cmr_utils import cli
from cmr_utils.features import store as F
from cmr_utils.data import given
from cmr_utils import run_dir as rd
from cmr_utils.features import extract as extraction
from cmr_utils.data.recipe1m import SPLITS, Recipe1M


# ---------------------------------------------------------------- 2: rounds and splits with no rows

def test_a_recipe_whose_every_photo_is_corrupt_alone_in_its_round_is_skipped(demo_root, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(demo_root, root)
    ds = Recipe1M(root)
    recipes = ds.split("val")
    for r in recipes[1:]:
        r.images = r.images[:1]  # everyone else is done in the first round
    lonely = recipes[0]
    lonely.images = [lonely.images[0], "ffffsecondphoto.jpg"]
    for im in lonely.images:
        path = ds.image_path("val", im)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # HashEncoder fails empty files
    feats = F.Features.load(F.image_features(ds, "val", HashEncoder(), tmp_path / "c", "fp", all_images=False))
    assert lonely.id not in set(feats.index.recipe_id) and len(feats.index) == len(recipes) - 1
    assert [lonely.id, "no readable image"] in feats.skipped.values.tolist()
    assert ["ffffsecondphoto.jpg", "empty file"] in feats.skipped.values.tolist()


def test_an_empty_given_split_says_which_ids_it_lacks(demo_root, tmp_path):
    ds = Recipe1M(demo_root)
    path = write(tmp_path / "image_val.npz", [], np.zeros((0, 6), np.float32))
    with pytest.raises(ValueError, match=rf"image_val\.npz: {len(ds.split('val'))} of {len(ds.split('val'))} val"):
        given.import_features(ds, "val", path, tmp_path / "c", "fp", "image", progress=False)


# ---------------------------------------------------------------- 3: pickles run code

class Payload:
    """Unpickling this creates a file: what a hostile .pkl could do instead."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return open, (str(self.target), "w")


def test_a_malicious_pickle_creates_nothing_and_says_how_to_opt_in(demo_root, tmp_path):
    ds = Recipe1M(demo_root)
    folder, victim = tmp_path / "given", tmp_path / "pwned"
    make_given(ds, folder)
    hostile = folder / "text_title_train.pkl"
    hostile.write_bytes(pickle.dumps({"ids": [], "X": Payload(victim)}))
    with pytest.raises(ValueError, match="given_allow_pickle: true") as e:
        extraction.extract(tmp_path / "run", tmp_path / "cache", demo_root, text_kinds=["title"], given_dir=folder,
                       progress=False)
    assert "text_title_train.pkl" in str(e.value) and "code" in str(e.value)
    assert not victim.exists()
    with pytest.raises(ValueError, match="given_allow_pickle"):
        given.read(hostile)
    assert not victim.exists()


# ---------------------------------------------------------------- 6: given files that name no file in their errors

def test_ragged_and_object_given_files_name_the_file(tmp_path):
    ragged = tmp_path / "text_title_val.pkl"
    ragged.write_bytes(pickle.dumps({"a": np.ones(3), "b": np.ones(4)}))
    with pytest.raises(ValueError, match=r"text_title_val\.pkl"):
        given.read(ragged, allow_pickle=True)
    obj = tmp_path / "image_val.npz"
    np.savez(obj, ids=np.array(["a", "b"]), X=np.array([np.ones(3), np.ones(4)], dtype=object))
    with pytest.raises(ValueError, match=r"image_val\.npz"):
        given.read(obj)


def test_given_dimensions_that_differ_between_splits_stop_extraction_naming_the_files(demo_root, tmp_path):
    ds = Recipe1M(demo_root)
    folder = tmp_path / "given"
    make_given(ds, folder)
    for split in SPLITS:
        (folder / f"text_title_{split}.pkl").unlink()
        rids = [r.id for r in ds.split(split)]
        write(folder / f"text_title_{split}.npz", rids, np.stack([vec(r, 5 if split == "test" else 4) for r in rids]))
    with pytest.raises(ValueError, match=r"text_title_test\.npz has 5 columns") as e:
        extraction.extract(tmp_path / "run", tmp_path / "cache", demo_root, text_kinds=["title"], given_dir=folder,
                       progress=False)
    assert "text_title_train.npz has 4 columns" in str(e.value)


# ---------------------------------------------------------------- 4: weights replaced under the same name

def test_content_hash_follows_bytes_and_is_memoised_by_size_and_mtime(tmp_path, monkeypatch):
    from cmr_utils import io
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"one")
    (folder / "sub" / "b.bin").write_bytes(b"two")
    before, file_before = io.content_hash(folder, tmp_path / "cache"), io.content_hash(folder / "a.bin")
    (folder / "a.bin").write_bytes(b"ONE")
    assert io.content_hash(folder, tmp_path / "cache") != before and io.content_hash(folder / "a.bin") != file_before
    monkeypatch.setattr(io, "_DIGESTS", {})  # a new process: the digests come from the cache's memo, no file is read
    monkeypatch.setattr(io.hashlib, "file_digest", lambda *a: pytest.fail("read a file it had hashed"))
    assert io.content_hash(folder, tmp_path / "cache") == io.content_hash(folder, tmp_path / "cache")


def test_replacing_image_weights_bytes_changes_the_features_key_and_the_stamp(tmp_path):
    import torch

    from cmr_utils.runner import stamps
    from cmr_utils.features.images import EfficientNetLite0, ImageEncoder
    weights = tmp_path / "lite0.pth"
    shutil.copy(EfficientNetLite0.bundled(), weights)
    params = {"image_weights": str(weights), "cache_dir": str(tmp_path / "cache")}
    config, stamp = ImageEncoder("efficientnet-lite0", str(weights), num_workers=0).config, stamps.inputs_key(params)
    state = torch.load(weights, weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] += 0.01
    torch.save(state, weights)  # same name, new bytes
    assert ImageEncoder("efficientnet-lite0", str(weights), num_workers=0).config != config
    assert stamps.inputs_key(params) != stamp


def test_replacing_a_text_model_folders_files_changes_the_features_key_and_the_stamp(tmp_path):
    from cmr_utils.runner import stamps
    from cmr_utils.features.text import TextEncoder
    from cmr_utils.features.weights import TEXT_MODELS
    folder = tmp_path / "my-model"
    shutil.copytree(TEXT_MODELS["minilm"](), folder)
    params = {"text_encoder": str(folder), "cache_dir": str(tmp_path / "cache")}
    config, stamp = TextEncoder(str(folder)).config, stamps.inputs_key(params)
    with open(folder / "vocab.txt", "a") as f:
        f.write("newword\n")
    assert TextEncoder(str(folder)).config != config
    assert stamps.inputs_key(params) != stamp


# ---------------------------------------------------------------- 5: duplicates; 8: links out of the data folder

def _copy(demo_root, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(demo_root, root)
    return root, json.loads((root / "layer1.json").read_text()), json.loads((root / "layer2.json").read_text())


def _save(root, layer1, layer2):
    (root / "layer1.json").write_text(json.dumps(layer1))
    (root / "layer2.json").write_text(json.dumps(layer2))
    return Recipe1M(root)


def test_duplicates_make_no_extra_pairs_and_are_recorded(demo_root, tmp_path):
    root, layer1, layer2 = _copy(demo_root, tmp_path)
    before = Recipe1M(root)
    a, b, c = before.split("train")[:3]
    entry = {e["id"]: e for e in layer2}
    entry[a.id]["images"].append({"id": a.images[0]})  # the same photo listed twice
    entry[b.id]["images"].append({"id": a.images[0]})  # another recipe's photo
    layer2.append({"id": c.id, "images": [{"id": a.images[-1]}]})  # a second layer2 entry
    dup = dict(next(r for r in layer1 if r["id"] == c.id), partition="test")  # a duplicate recipe from another split
    layer1.append(dup)
    ds = _save(root, layer1, layer2)
    assert ds.recipes[a.id].images == a.images and ds.recipes[b.id].images == b.images
    assert ds.recipes[c.id].images == c.images and ds.recipes[c.id].partition == "train"
    rows = ds.skipped.values.tolist()
    assert ["image", a.images[0], "image listed twice for its recipe"] in rows
    assert ["image", a.images[0], f"image already listed for recipe {a.id}"] in rows
    assert ["layer2", c.id, "duplicate layer2 entry"] in rows and ["layer1", c.id, "duplicate recipe id"] in rows
    pairs = [(r.id, im) for r in ds.split("train") for im in r.images]
    assert len(pairs) == len(set(pairs)) == sum(len(r.images) for r in before.split("train"))


def test_a_photo_linking_out_of_the_data_folder_is_skipped_while_linked_split_folders_work(demo_root, tmp_path):
    root, layer1, layer2 = _copy(demo_root, tmp_path)
    disk2 = tmp_path / "disk2"
    disk2.mkdir()
    shutil.move(root / "images" / "val", disk2 / "val")
    (root / "images" / "val").symlink_to(disk2 / "val")  # a split folder from another disk
    secret = tmp_path / "secret.jpg"
    ds = Recipe1M(root)
    test = ds.split("test")
    leak, inside = test[0], test[1]
    path = ds.image_path("test", leak.images[0])
    shutil.copy(path, secret)
    path.unlink()
    path.symlink_to(secret)  # one photo leading out of the data folder
    other = ds.image_path("test", inside.images[0])
    moved = root / "elsewhere-in-root.jpg"
    shutil.move(other, moved)
    other.symlink_to(moved)  # a link that stays inside the data root
    ds = Recipe1M(root)
    assert leak.images[0] not in ds.recipes[leak.id].images
    assert ["image", leak.images[0], "image file links outside the data folder"] in ds.skipped.values.tolist()
    assert ds.recipes[inside.id].images == inside.images
    assert [r.id for r in ds.split("val")] == [r.id for r in Recipe1M(demo_root).split("val")]


# ---------------------------------------------------------------- 6: one rule per parameter, checked before anything runs

def test_every_declared_parameter_has_its_rule():
    from cmr_utils.runner import params as P
    from cmr_utils.runner import notebooks as pipeline
    assert sorted({n for d in pipeline.declared().values() for n in d} - set(P.RULES)) == []


@pytest.mark.parametrize("override", [
    "kernel_landmarks=0", "kernel_landmarks=1", "kernel_landmarks=-5", "kernel_gamma=-1", "seed=-1", "demo_seed=-3",
    "n_examples=-1", "n_examples=1000000000", "tsne_points=-3", "demo_recipes=0", "n_bags=1000000000",
    "batch_size=1000000000", "num_workers=-1", "device=gpu", "select=test", "swaps=[[chocolate]]",
    "given_allow_pickle=yes please", "synthetic_scale=1000"])
def test_a_value_out_of_its_rule_stops_naming_parameter_source_and_accepted_values(tmp_path, override):
    from cmr_utils.runner import params as P
    from cmr_utils.runner.grid import expand
    f = tmp_path / "p.yaml"
    f.write_text("n_bags: 2\n")
    name = override.split("=")[0]
    with pytest.raises(P.ParameterError, match=rf"--set '{re.escape(override)}'.*'{name}'.*(must be|should be)") as e:
        expand(P.load(f, [override]), str(f))
    assert any(w in str(e.value) for w in ("integer", "one of", "number", "true or false", "'cpu'", "pairs")), e.value
    f.write_text(f"{name}: {override.split('=', 1)[1]}\n")
    with pytest.raises(P.ParameterError, match=rf"{re.escape(str(f))}: parameter '{name}'"):
        expand(P.load(f), str(f))


def _cli(*args):
    """(the finished runner, its CPU seconds): on a machine shared with other work, wall time measures the others."""
    import resource
    import subprocess
    import sys
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "cmr_utils", "run", "params/demo.yaml", *args], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)


def test_a_bad_set_and_a_name_leaving_reports_stop_at_once():
    done, seconds = _cli("--set", "kernel_landmarks=0")
    assert done.returncode == 1 and "kernel_landmarks" in done.stderr and "--set" in done.stderr and seconds < 15
    assert "≥ 2 and ≤" in done.stderr
    done, seconds = _cli("--name", "../x")
    assert done.returncode == 1 and "--name '../x'" in done.stderr and seconds < 15, done.stderr


# ---------------------------------------------------------------- 7: run folders stay in reports/, locks cover nesting

@pytest.mark.parametrize("name", ["../x", "/tmp/x", "..", ".", "a/../../x", "a//b", ""])
def test_a_run_name_that_leaves_reports_is_refused(tmp_path, name):
    from cmr_utils.runner import params as P
    from cmr_utils.runner import run as R
    with pytest.raises(P.ParameterError, match="--name"):
        R.run_folder(tmp_path / "reports", name)
    assert R.run_folder(tmp_path / "reports", "g/pt") == (tmp_path / "reports" / "g" / "pt").resolve()


def test_the_run_lock_covers_folders_inside_and_around(tmp_path):
    from cmr_utils.runner import run as R
    reports = tmp_path / "reports"
    with R.claim(reports / "g", reports):
        with pytest.raises(RuntimeError, match="in use"):
            with R.claim(reports / "g" / "pt", reports):
                pass
    with R.claim(reports / "g" / "pt", reports):
        with pytest.raises(RuntimeError, match="in use"):
            with R.claim(reports / "g", reports):
                pass
        with R.claim(reports / "h", reports):  # a sibling is free
            pass


def test_share_takes_the_run_lock(tmp_path, capsys):
    from cmr_utils.runner import run as R
    run_dir = tmp_path / "reports" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "index.html").write_text("<html><body>hi</body></html>")
    with R.claim(run_dir):
        assert cli.main(["share", str(run_dir)]) == 1
    assert "in use" in capsys.readouterr().err and not (tmp_path / "reports" / "r.zip").exists()
    assert cli.main(["share", str(run_dir)]) == 0 and (tmp_path / "reports" / "r.zip").exists()


# ---------------------------------------------------------------- 9: leftovers, terminals, caches that cannot run code

def test_a_killed_writers_temporaries_are_removed_when_the_entry_is_built(tmp_path):
    from cmr_utils.io import key
    meta = {"what": "entry"}
    dest = tmp_path / "cache" / "features" / key(meta)
    left = dest.with_name(f".{dest.name}.0badf00d")
    (left / "X.npy").parent.mkdir(parents=True)
    (left / "X.npy").write_bytes(b"\0" * 1000)
    neighbour = dest.with_name(".otherkey.0badf00d")
    neighbour.mkdir()

    def build(d):
        F.store(d, np.ones((2, 3)), F.pd.DataFrame({"recipe_id": ["a", "b"], "image_id": ""}), [], meta)
    assert F.cached(tmp_path / "cache", meta, build) == dest
    assert not left.exists() and neighbour.exists()  # another entry's temporary is its writer's business


def test_search_prints_titles_without_their_control_sequences(monkeypatch, capsys):
    import pandas as pd

    from cmr_utils.report import search

    class Stub:
        label = "title: ridge"

        def search(self, queries, k, to):
            return [pd.DataFrame({"score": [0.9], "recipe_id": ["0000004096"], "title": ["Pie\x1b]0;pwned\x07\x1b[2J\x9b"],
                                  "match": [False]}, index=pd.RangeIndex(1, 2, name="rank"))]
    monkeypatch.setattr(search, "load", lambda run_dir, kind=None: Stub())
    assert cli.main(["search", "somewhere", "apple pie"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out) and "Pie\\x1b]0;pwned\\x07\\x1b[2J\\x9b" in out
    assert "0000004096" in out


@pytest.mark.parametrize("model", ["ridge", "kernel"])
def test_cached_models_and_galleries_are_npz_that_load_without_pickle(tmp_path, model):
    import pandas as pd

    from cmr_utils.fit import cache as models
    from cmr_utils.report import search
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(80, 6)), rng.normal(size=(80, 5))
    Y[:, :2] += X[:, :2]
    params = dict(model=model, n_components=3, shrinkage=0.5, kernel_landmarks=20)
    est, path = models.fit_cached(tmp_path, "x", "y", X, Y, **params)
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    again = models.load(path, 3)
    for a, b in zip(est.transform(X, Y), again.transform(X, Y)):
        np.testing.assert_allclose(a, b)
    index = pd.DataFrame({"recipe_id": ["0000004096", "7"], "image_id": ["a.jpg", "b.jpg"], "title": ["$5 Pie", ""],
                          "path": ["/p/a.jpg", "/p/b.jpg"]})
    g = search.Gallery(tmp_path, {"text_kind": "title", "model": model}, est, {"image": {"name": "given"}},
                       *est.transform(X[:2], Y[:2]), index)
    search._write_gallery(tmp_path / "g.npz", g, "stamp")
    back = search._read_gallery(tmp_path, tmp_path / "g.npz", "stamp")
    pd.testing.assert_frame_equal(back.index, index)
    np.testing.assert_allclose(back.space.transform(X)[0], est.transform(X)[0])
    assert back.config == g.config and search._read_gallery(tmp_path, tmp_path / "g.npz", "other") is None


# ---------------------------------------------------------------- 1: titles are text, not maths

TRICKY = ["Money Bags ($$)", "$5 Pasta for $2 each", r"{Nan's} 100% \frac_pie^2 {}"]


def test_titles_with_dollars_and_tex_are_drawn_as_written(tmp_path):
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.text import Text
    from PIL import Image

    from cmr_utils.report import plots
    from cmr_utils.report import search
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (40, 30), (60 * i, 90, 120)).save(paths[-1])
    titles = [*TRICKY, "Plain soup"]
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(4, 3)).astype(np.float32)
    index = pd.DataFrame({"recipe_id": list("abcd"), "image_id": "", "title": titles, "path": paths})
    g = search.Gallery(tmp_path, {"text_kind": "title"}, None, {}, Z, Z, index)
    g.embed_texts = lambda words: rng.normal(size=(len(words), 3)).astype(np.float32)
    figures = [plots.retrieval_examples({"title": g}, [0, 1, 2], k=3), plots.photos_for_recipe({"title": g}, [0, 1, 2], k=3),
               plots.arithmetic_examples({"title": g}, [["money", "pasta"]], k=3)]
    for fig in figures:
        fig.canvas.draw()  # "($$)" raised in mathtext here
        drawn = [t for t in fig.findobj(Text) if "$" in t.get_text() or "\\frac" in t.get_text()]
        assert drawn and not [t.get_text() for t in drawn if t.get_parse_math()]
    shown = "\n".join(t.get_text() for t in figures[1].findobj(Text))
    assert all(f"“{t}” →" in shown for t in TRICKY)
    plt.close("all")


# ---------------------------------------------------------------- skipped.csv in every run folder

def test_extraction_writes_skipped_csv_with_ids_as_written(demo_root, tmp_path):
    root, layer1, layer2 = _copy(demo_root, tmp_path)
    layer2.append({"id": "0000004096", "images": []})
    ds = _save(root, layer1, layer2)
    make_given(ds, tmp_path / "given")
    extraction.extract(tmp_path / "run", tmp_path / "cache", root, text_kinds=["title"], given_dir=tmp_path / "given",
                   given_allow_pickle=True, progress=False)
    skipped = rd.read_skipped(tmp_path / "run")
    assert list(skipped.columns) == ["stage", "split", "id", "reason"]
    assert ["layer2", "", "0000004096", "layer2 entry for a recipe not in layer1"] in skipped.values.tolist()
    assert "0000004096," in (tmp_path / "run" / "skipped.csv").read_text()


# ---------------------------------------------------------------- the whole run on a messy real-photo root

def _messy_root(shared_root, dest, outside):
    """~150 recipes of the real sample, with every fault of this module planted; returns (root, planted ids)."""
    layer1 = json.loads((shared_root / "layer1.json").read_text())
    layer2 = {e["id"]: e for e in json.loads((shared_root / "layer2.json").read_text())}
    want = {"train": 90, "val": 25, "test": 36}
    keep = []
    for r in layer1:
        if want.get(r["partition"], 0) > 0 and r["id"] in layer2:
            want[r["partition"]] -= 1
            keep.append(r)
    entries = [{"id": r["id"], "images": [dict(im) for im in layer2[r["id"]]["images"]]} for r in keep]
    for r, e in zip(keep, entries):
        for im in e["images"]:
            src = shared_root / "images" / r["partition"] / Path(*im["id"][:4]) / im["id"]
            if src.is_file():
                (dest / src.relative_to(shared_root)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dest / src.relative_to(shared_root))
    test = [i for i, r in enumerate(keep) if r["partition"] == "test"]
    for n, i in enumerate(test[:-3]):
        keep[i]["title"] = TRICKY[n % 3] if n % 2 == 0 else keep[i]["title"]
    corrupt, linked, train = keep[test[-1]], keep[test[-2]], next(i for i, r in enumerate(keep) if r["partition"] == "train")
    bad = ["ffff0001corrupt.jpg", "ffff0002corrupt.jpg"]
    for im, data in zip(bad, (b"not a photo at all", b"\xff\xd8\xff\xe0 truncated")):
        path = dest / "images" / "test" / Path(*im[:4]) / im
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    entries[test[-1]]["images"] = [{"id": im} for im in bad]  # every photo of a test recipe is corrupt
    photo = entries[test[-2]]["images"][0]["id"]
    path = dest / "images" / "test" / Path(*photo[:4]) / photo
    shutil.move(path, outside)
    path.symlink_to(outside)  # a photo leading out of the data folder
    twice = entries[train]["images"][0]["id"]
    entries[train]["images"].append({"id": twice})  # a photo listed twice
    (dest / "layer1.json").write_text(json.dumps(keep))
    (dest / "layer2.json").write_text(json.dumps(entries))
    return dest, {"corrupt": (corrupt["id"], bad), "linked": (linked["id"], photo), "twice": (keep[train]["id"], twice)}


@pytest.mark.slow
def test_the_real_sample_with_every_fault_runs_to_the_end(shared_root, tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from cmr_utils.report import plots
    from cmr_utils.report import search
    from cmr_utils.runner import run as R
    from cmr_utils.features.store import Features
    root, planted = _messy_root(shared_root, tmp_path / "root", tmp_path / "outside.jpg")
    cheap = [f"data_dir={root}", f"cache_dir={tmp_path / 'cache'}", "image_encoder=efficientnet-lite0",
             "image_views=1", "text_encoder=minilm", "text_kinds=[title]", "models=[exact]",
             "latent_dims=[4, 8]", "shrinkage=[0.5]", "scores=[correlation]", "bag_sizes=[20]", "n_bags=2",
             "select=val", "n_examples=2", "grid={latent_dims: [[4], [4, 8]]}"]
    run_dir = R.run(R.ROOT / "params" / "epicurious.yaml", cheap, name="messy", reports_dir=tmp_path / "reports")
    points = sorted(p for p in run_dir.iterdir() if (p / "results.csv").exists())
    assert len(points) == 2
    for point in points:
        skipped = rd.read_skipped(point)
        rows = {tuple(r) for r in skipped[["stage", "id", "reason"]].values.tolist()}
        rid, bad = planted["corrupt"]
        assert {("image encoder", im) for im in bad} <= {(s, i) for s, i, _ in rows}
        assert ("image encoder", rid, "no readable image") in rows
        assert ("image", planted["linked"][1], "image file links outside the data folder") in rows
        assert ("image", planted["twice"][1], "image listed twice for its recipe") in rows
        manifest = json.loads((point / "features.json").read_text())
        train = Features.load(manifest["image"]["train"]).index
        assert (train.image_id == planted["twice"][1]).sum() == 1  # used exactly once
        outputs = [o for c in json.loads((point / "04_visualize.ipynb").read_text())["cells"] for o in c.get("outputs", [])]
        assert outputs and not [o for o in outputs if o["output_type"] == "error"]
        assert "Traceback" not in (point / "04_visualize.html").read_text()
    galleries = search.galleries(points[0])
    g = next(iter(galleries.values()))
    rows = [int(np.flatnonzero(g.index.title == t)[0]) for t in TRICKY]
    fig = plots.photos_for_recipe(galleries, rows, k=5)
    fig.canvas.draw()
    shown = "\n".join(t.get_text() for t in fig.findobj(Text))
    assert all(f"“{t}” →" in shown for t in TRICKY)
    plt.close("all")
