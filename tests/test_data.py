import json
import shutil

import pytest

from cmr_utils.data import TEXT_KINDS, Recipe1M, iter_json_array


@pytest.mark.parametrize("chunk", [1, 3, 17, 1 << 20])
def test_streaming_parser_equals_json_load(tmp_path, chunk):
    items = [{"id": i, "x": [1.5, -2e3, None, True], "s": "é,]}[{\"" * (i % 3)} for i in range(40)] + [12345, "z"]
    f = tmp_path / "a.json"
    f.write_text(json.dumps(items, indent=(2 if chunk % 2 else None)))
    assert list(iter_json_array(f, chunk)) == items


def test_streaming_parser_rejects_truncated_and_non_arrays(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('[{"id": 1}, {"id": 2')
    with pytest.raises(ValueError, match="truncated"):
        list(iter_json_array(f, 4))
    f.write_text('{"id": 1}')
    with pytest.raises(ValueError, match="array"):
        list(iter_json_array(f))
    f.write_text("[]")
    assert list(iter_json_array(f)) == []


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
