import json
import re
import shutil

import ijson
import pytest

from cmr_utils.data import recipe1m as data
from cmr_utils.data.recipe1m import TEXT_KINDS, JSONFormatError, Recipe1M, iter_json_array


@pytest.mark.parametrize("chunk", [1, 3, 17, 1 << 20])
def test_streaming_parser_equals_json_load(tmp_path, chunk):
    items = [{"id": i, "x": [1.5, -2e3, None, True], "s": "é,]}[{\"" * (i % 3)} for i in range(40)] + [12345, "z"]
    f = tmp_path / "a.json"
    f.write_text(json.dumps(items, indent=(2 if chunk % 2 else None)))
    assert list(iter_json_array(f, chunk)) == items


@pytest.mark.parametrize("text, where", [
    ('[{"id": 1} {"id": 2}]', 10),  # missing comma
    ('[{"id": 1}, {"id": 2}] junk', 23),  # trailing junk after the array
    ('[{"id": 1}, {"id": 2', 20),  # truncated
    ('{"id": 1}', 0), ('  7', 2), ("", 0),  # not an array
])
@pytest.mark.parametrize("backend", ["yajl2_c", "python"])  # python: ijson's fallback without a compiler
def test_json_reader_rejects_malformed_files_naming_file_and_byte(tmp_path, monkeypatch, text, where, backend):
    monkeypatch.setattr(data, "_ijson", ijson.get_backend(backend))
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(JSONFormatError, match=re.escape(str(f)) + r".* near byte (\d+)") as e:
        list(iter_json_array(f))
    msg = str(e.value)
    at = int(re.search(r"near byte (\d+)", msg)[1])
    assert where <= at <= len(text)
    first = text.lstrip()[:1]
    if first != "[":  # not an array: the message shows its first character, at its offset
        assert msg.endswith(f"found {first.encode()!r} near byte {len(text) - len(first + text.lstrip()[1:])}")
    else:  # Python's own parser finds the error inside the span the message names
        with pytest.raises(json.JSONDecodeError) as ref:
            json.loads(text)
        span = int(re.search(r"within the (\d+) bytes before it", msg)[1])
        assert at - span <= ref.value.pos <= at


def test_json_reader_fails_near_the_error_without_reading_on(tmp_path):
    """A syntax error early in a big file is reported where it is, not after buffering the rest."""
    f = tmp_path / "big.json"
    head = "[" + ",".join(json.dumps({"id": f"{i:010x}", "t": "x" * 50}) for i in range(2000))
    f.write_text(head + ',{"id": nope},' + ",".join(['{"id": "later"}'] * 300_000) + "]")
    with pytest.raises(ValueError, match="near byte") as e:
        list(iter_json_array(f))
    at = int(re.search(r"near byte (\d+)", str(e.value))[1])
    assert len(head) <= at <= len(head) + (1 << 16) < f.stat().st_size // 10


def test_json_reader_yields_floats_not_decimals(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('[{"w": 0.25, "n": 3}]')
    (item,) = iter_json_array(f)
    assert type(item["w"]) is float and type(item["n"]) is int


def test_loader_on_generated_corpus(demo_root):
    ds = Recipe1M(demo_root)
    layer1 = json.loads((demo_root / "layer1.json").read_text())
    layer2 = json.loads((demo_root / "layer2.json").read_text())
    assert len(ds.recipes) == len(layer1)
    counts = ds.counts()
    assert counts.recipes.sum() == len(layer1)
    assert counts.images.sum() == sum(len(e["images"]) for e in layer2)
    assert ds.skipped.empty
    r = ds.split("test")[0]
    assert ds.image_path("test", r.images[0]).is_file()
    assert ds.image_path("test", r.images[0]).parts[-5:-1] == tuple(r.images[0][:4])
    texts = {k: r.text(k) for k in TEXT_KINDS}
    assert texts["title"] in texts["all"] and texts["ingredients"] in texts["all"]
    assert texts["instructions"] in texts["all"]


def test_loader_records_faults(demo_root, tmp_path):
    root = tmp_path / "faulty"
    shutil.copytree(demo_root, root)
    layer1 = json.loads((root / "layer1.json").read_text())
    layer2 = json.loads((root / "layer2.json").read_text())
    layer1[0]["instructions"] = []
    layer1[1]["partition"] = "holdout"
    layer2.append({"id": "0000000000", "images": [{"id": "abcdef.jpg"}]})
    gone = layer2[2]["images"][0]["id"]
    (root / "images" / layer1[2]["partition"] / "/".join(gone[:4]) / gone).unlink()
    (root / "layer1.json").write_text(json.dumps(layer1))
    (root / "layer2.json").write_text(json.dumps(layer2))
    ds = Recipe1M(root)
    found = set(zip(ds.skipped.id, ds.skipped.reason))
    assert ("0000000000", "layer2 entry for a recipe not in layer1") in found
    assert (gone, "image file missing") in found
    assert (layer1[1]["id"], "unknown partition 'holdout'") in found
    assert ds.recipes[layer1[0]["id"]].text("instructions") == ""
    assert ds.fingerprint() != Recipe1M(demo_root).fingerprint()


def test_missing_layer_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="layer1.json"):
        Recipe1M(tmp_path)


def test_shared_sample_counts_and_faults(shared_root):
    ds = Recipe1M(shared_root)
    counts = ds.counts()
    assert counts.loc["val", "recipes"] == 250 and counts.loc["test", "recipes"] == 1000
    assert counts.loc["train", "recipes"] == 1511  # 1,512 in layer1; one lists only a missing photo
    reasons = ds.skipped.reason.value_counts().to_dict()
    assert reasons == {"image file missing": 1, "layer2 entry for a recipe not in layer1": 1,
                       "recipe has no image": 1}
    no_steps = [r for r in ds.recipes.values() if not r.instructions]
    assert no_steps and all(r.text("instructions") == "" for r in no_steps)


def test_detected_ingredients_replace_raw_lines(demo_root, tmp_path):
    root = tmp_path / "det"
    shutil.copytree(demo_root, root)
    layer1 = json.loads((root / "layer1.json").read_text())
    with pytest.raises(FileNotFoundError, match="det_ingrs.json"):
        Recipe1M(root, ingredients="detected")
    det = [{"id": r["id"], "valid": [True, False] + [True] * (len(r["ingredients"]) - 2),
            "ingredients": [{"text": f"name{i}"} for i in range(len(r["ingredients"]))]} for r in layer1[1:]]
    (root / "det_ingrs.json").write_text(json.dumps(det))
    raw, ds = Recipe1M(root), Recipe1M(root, ingredients="detected")
    r = ds.recipes[layer1[1]["id"]]
    assert r.ingredients == ["name0"] + [f"name{i}" for i in range(2, len(layer1[1]["ingredients"]))]
    assert r.text("ingredients") == "\n".join(r.ingredients) and r.text("title") == layer1[1]["title"]
    assert ("det_ingrs", layer1[0]["id"], "no detected ingredients entry") in set(
        map(tuple, ds.skipped[["stage", "id", "reason"]].values))
    assert ds.fingerprint() != raw.fingerprint()


def _faulty_copy(demo_root, tmp_path, edit):
    root = tmp_path / "faulty"
    shutil.copytree(demo_root, root)
    layers = [json.loads((root / name).read_text()) for name in ("layer1.json", "layer2.json")]
    edit(*layers)
    for name, layer in zip(("layer1.json", "layer2.json"), layers):
        (root / name).write_text(json.dumps(layer))
    return root, layers


UNSAFE_IDS = ["../../x.jpg", "abcd/../..", "..", ".", "ab\\cd.jpg", "abc\0d.jpg", "/etc/passwd",
              "abcd/" + "../" * 7 + "layer1.json"]  # the last one names root/layer1.json, an existing file


def test_unsafe_image_ids_never_name_a_file_outside_images(demo_root, tmp_path):
    root, (layer1, layer2) = _faulty_copy(
        demo_root, tmp_path, lambda l1, l2: l2[0]["images"].extend({"id": i} for i in UNSAFE_IDS))
    nested = root / "images" / layer1[0]["partition"] / "a" / "b" / "c" / "d"
    (nested / "abcd").mkdir(parents=True)
    assert (nested / UNSAFE_IDS[-1]).is_file()  # what a plain join would open
    ds = Recipe1M(root)
    recipe = ds.recipes[layer2[0]["id"]]
    assert recipe.images == [im["id"] for im in layer2[0]["images"][:-len(UNSAFE_IDS)]]
    unsafe = ds.skipped[ds.skipped.reason == "unsafe image id (path separator or '..')"]
    assert sorted(unsafe.id) == sorted(UNSAFE_IDS) and set(unsafe.stage) == {"image"}
    assert len(ds.skipped) == len(UNSAFE_IDS)
    for image_id in UNSAFE_IDS + ["", None]:
        with pytest.raises(ValueError):
            ds.image_path(recipe.partition, image_id)
    with pytest.raises(ValueError):
        ds.image_path("../..", recipe.images[0])


def test_malformed_layer1_recipes_are_skipped_with_a_reason(demo_root, tmp_path):
    def edit(layer1, layer2):
        layer1[1]["ingredients"] = "2 eggs"
        layer1[2]["title"] = ["a", "title"]
        layer1[3]["instructions"] = {"text": "stir"}
        layer1 += ["not a recipe", {"title": "no id"}, {"id": 42, "partition": "train"}, {"id": "", "partition": "val"},
                   dict(layer1[4], title="a later duplicate")]
    root, (layer1, _) = _faulty_copy(demo_root, tmp_path, edit)
    ds = Recipe1M(root)
    n = len(layer1) - 5
    assert set(map(tuple, ds.skipped.values)) == {
        ("layer1", layer1[1]["id"], "recipe of the wrong shape: ingredients is str, expected a list"),
        ("layer1", layer1[2]["id"], "recipe of the wrong shape: title is list, expected a string"),
        ("layer1", layer1[3]["id"], "recipe of the wrong shape: instructions is dict, expected a list"),
        ("layer1", f"<entry {n}>", "recipe of the wrong shape: str, expected an object"),
        ("layer1", f"<entry {n + 1}>", "recipe without id"), ("layer1", f"<entry {n + 2}>", "recipe without id"),
        ("layer1", f"<entry {n + 3}>", "recipe without id"), ("layer1", layer1[4]["id"], "duplicate recipe id"),
        *(("layer2", layer1[i]["id"], "layer2 entry for a recipe not in layer1") for i in (1, 2, 3))}
    assert len(ds.recipes) == n - 3 and ds.recipes[layer1[4]["id"]].title == layer1[4]["title"]


def test_malformed_layer2_entries_are_skipped_with_a_reason(demo_root, tmp_path):
    def edit(layer1, layer2):
        layer2[1]["images"] = {"id": "abcdef.jpg"}
        layer2[2]["images"] = [{"url": "x"}, {"id": 7}, "abcdef.jpg"] + layer2[2]["images"]
        layer2 += [["not", "an", "entry"], {"images": []}, {"id": None}]
    root, (layer1, layer2) = _faulty_copy(demo_root, tmp_path, edit)
    ds = Recipe1M(root)
    n = len(layer2) - 3
    assert set(map(tuple, ds.skipped.values)) == {
        ("layer2", layer2[1]["id"], "layer2 entry of the wrong shape: images is dict, expected a list"),
        ("layer1", layer2[1]["id"], "recipe has no image"),
        ("layer2", layer2[2]["id"], "image entry without an id"),
        ("layer2", f"<entry {n}>", "layer2 entry of the wrong shape: list, expected an object"),
        ("layer2", f"<entry {n + 1}>", "layer2 entry without id"),
        ("layer2", f"<entry {n + 2}>", "layer2 entry without id")}
    assert (ds.skipped.reason == "image entry without an id").sum() == 3
    assert ds.recipes[layer2[2]["id"]].images == [im["id"] for im in layer2[2]["images"][3:]]
