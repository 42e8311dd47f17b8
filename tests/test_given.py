
import numpy as np
import pytest
from helpers import make_given, vec, write

from cmr_utils.data import given
from cmr_utils import run_dir as rd
from cmr_utils.features import extract as extraction
from cmr_utils.data.recipe1m import SPLITS, Recipe1M


@pytest.mark.parametrize("ext", [".npz", ".npy", ".pkl", ".h5"])
def test_every_format_reads_back(tmp_path, ext):
    ids = [f"r{i}" for i in range(5)]
    X = np.arange(15, dtype=np.float64).reshape(5, 3)
    got_ids, got = given.read(write(tmp_path / f"f{ext}", ids, X), allow_pickle=ext == ".pkl")
    assert got_ids == ids and got.dtype == np.float32
    np.testing.assert_array_equal(got, X)


def test_bad_files_say_what_is_wrong(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="a.ids.txt"):
        given.read(tmp_path / "a.npy")
    np.savez(tmp_path / "b.npz", ids=np.array(["x", "y", "z"]), X=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one row per id"):
        given.read(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", ids=np.array(["x", "x"]), X=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="more than once"):
        given.read(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ids"):
        given.read(tmp_path / "d.npz")
    (tmp_path / "e.csv").write_text("x")
    with pytest.raises(ValueError, match="unsupported"):
        given.read(tmp_path / "e.csv")


@pytest.mark.parametrize("by", ["image", "recipe"])
def test_given_features_align_to_the_loader_pairs(demo_root, tmp_path, by):
    ds = Recipe1M(demo_root)
    make_given(ds, tmp_path / "given", by=by)
    extraction.extract(tmp_path / "run", tmp_path / "cache", demo_root, text_kinds=["title"],
                       given_dir=tmp_path / "given", given_allow_pickle=True, progress=False)
    assert rd.RunDir(tmp_path / "run").manifest["source"] == "given"
    for split in SPLITS:
        X, Y, index = rd.RunDir(tmp_path / "run").pairs("title", split)
        n = sum(len(r.images) for r in ds.split(split)) if (split == "train" and by == "image") else len(ds.split(split))
        assert len(X) == len(Y) == n
        for i in (0, n - 1):
            rid, im = index.recipe_id[i], index.image_id[i]
            np.testing.assert_array_equal(X[i], vec(im if by == "image" else rid))
            np.testing.assert_array_equal(Y[i], vec(rid + "title", 4))
            assert im in ds.recipes[rid].images


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fortran_ordered_npy_reads_the_right_rows(tmp_path, dtype):
    """numpy saves a column-major array column by column: its rows are not contiguous in the file."""
    ids = [f"r{i}" for i in range(5)]
    X = np.asfortranarray(np.arange(15, dtype=dtype).reshape(5, 3) * 1.5)
    path = write(tmp_path / "f.npy", ids, X)
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        assert np.lib.format.read_array_header_1_0(f)[1]  # stored Fortran-ordered
    got_ids, got = given.read(path)
    assert got_ids == ids
    np.testing.assert_array_equal(np.asarray(got)[[4, 0, 2]], [[18, 19.5, 21], [0, 1.5, 3], [9, 10.5, 12]])


def test_fortran_ordered_npy_image_features_align_to_the_loader_pairs(demo_root, tmp_path):
    ds = Recipe1M(demo_root)
    make_given(ds, tmp_path / "given")
    for split in SPLITS:
        old = tmp_path / "given" / f"image_{split}.npz"
        with np.load(old) as z:
            write(old.with_suffix(".npy"), list(z["ids"]), np.asfortranarray(z["X"]))
        old.unlink()
    extraction.extract(tmp_path / "run", tmp_path / "cache", demo_root, text_kinds=["title"],
                       given_dir=tmp_path / "given", given_allow_pickle=True, progress=False)
    for split in SPLITS:
        X, _, index = rd.RunDir(tmp_path / "run").pairs("title", split)
        np.testing.assert_array_equal(np.asarray(X), np.stack([vec(im) for im in index.image_id]))


def test_missing_ids_are_an_error_naming_them(demo_root, tmp_path):
    ds = Recipe1M(demo_root)
    lost = ds.split("val")[0].id
    make_given(ds, tmp_path / "given", by="recipe", drop={lost})
    with pytest.raises(ValueError, match=rf"1 of {len(ds.split('train'))} train|1 of {len(ds.split('val'))} val") as e:
        extraction.extract(tmp_path / "run", tmp_path / "cache", demo_root, text_kinds=["title"],
                       given_dir=tmp_path / "given", given_allow_pickle=True, progress=False)
    assert lost in str(e.value)
    with pytest.raises(FileNotFoundError, match="text_ingredients_train"):
        extraction.extract(tmp_path / "run", tmp_path / "cache", demo_root, text_kinds=["ingredients"],
                       given_dir=tmp_path / "given", given_allow_pickle=True, progress=False)


def test_non_finite_given_features_stop_naming_the_file(tmp_path):
    X = np.ones((4, 3), np.float32)
    X[2, 1] = np.nan
    path = write(tmp_path / "image_test.npz", ["a", "b", "c", "d"], X)
    with pytest.raises(ValueError, match=r"image_test\.npz: 1 of 4 rows contain NaN.*'c'"):
        given.read(path)
