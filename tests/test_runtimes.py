"""Inference runtimes: the same features as torch float32 on real photos and texts, converted once, and a
missing runtime falls back to torch with one line."""
import json

import numpy as np
import pytest
import torch

from cmr_utils import cluster
from cmr_utils.features import runtimes
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.features.images import ImageEncoder
from cmr_utils.features.text import TextEncoder


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def real(shared_root):
    """16 real photos (GIF/PNG named .jpg among them) and the texts of their recipes, long ones included."""
    ds = Recipe1M(shared_root)
    recipes = [r for r in ds.split("val") if r.images][:16]
    return [ds.image_path("val", r.images[0]) for r in recipes], [r.text("all") for r in recipes]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("runtimes")


@pytest.fixture(scope="module")
def reference(real, cache):
    paths, texts = real
    images = ImageEncoder("efficientnet-lite0", num_workers=0, views=2, backend="torch", cache_dir=cache)
    return images.encode(paths, progress=False)[0], TextEncoder("minilm", backend="torch").encode(texts, progress=False)


@pytest.mark.parametrize("backend,precision", [
    ("openvino", "float32"), ("onnxruntime", "float32"), ("torch", "bfloat16"), ("openvino", "bfloat16")])
def test_each_runtime_gives_torch_float32_features(real, cache, reference, backend, precision):
    paths, texts = real
    images = ImageEncoder("efficientnet-lite0", num_workers=0, views=2, backend=backend, precision=precision,
                          cache_dir=cache)
    text = TextEncoder("minilm", batch_size=4, backend=backend, precision=precision, cache_dir=cache)
    assert (images.config["backend"], images.config["precision"]) == (backend, precision)
    X, failed = images.encode(paths, progress=False)
    assert not failed
    image_cos, text_cos = cosines(X, reference[0]), cosines(text.encode(texts, progress=False), reference[1])
    if precision == "float32":
        assert min(image_cos.min(), text_cos.min()) >= 0.99999
    else:  # 8 bits of mantissa through EfficientNet's 16 blocks: 0.9992 for most photos, a few lower
        assert text_cos.min() >= 0.999 and image_cos.mean() >= 0.999 and image_cos.min() >= 0.99


def test_a_converted_model_is_cached_by_weights_and_reused(cache, monkeypatch, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(6, 3))
    example, dynamic = (torch.zeros(2, 6),), [{0: "batch"}]
    run = runtimes.build(net, {}, example, dynamic, "openvino", "float32", torch.device("cpu"), tmp_path)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    assert np.allclose(run(x), net(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    converted = list((tmp_path / "runtimes").glob("*/model.xml"))
    assert len(converted) == 1

    def no_conversion(*args):
        raise AssertionError("converted again")
    monkeypatch.setattr(runtimes, "_convert", no_conversion)
    runtimes.build(net, {}, example, dynamic, "openvino", "float32", torch.device("cpu"), tmp_path)  # reused
    with torch.no_grad():
        net[0].bias += 1  # other weights: another copy
    with pytest.raises(AssertionError, match="converted again"):
        runtimes.build(net, {}, example, dynamic, "openvino", "float32", torch.device("cpu"), tmp_path)


def test_a_missing_runtime_falls_back_to_torch_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(runtimes, "_installed", lambda backend: False)
    encoder = ImageEncoder("efficientnet-lite0", num_workers=0, backend="openvino")
    assert encoder.config["backend"] == "torch"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "openvino" in err[0] and "pip install openvino" in err[0] and "using torch" in err[0]
    assert runtimes.resolve("auto", torch.device("cpu")) == "torch"  # auto says nothing: it only picks
    assert capsys.readouterr().err == ""


def test_converting_a_text_model_prints_nothing(cache, capfd):
    """Tracing reads every attribute of a transformers model; its notices must not reach a first run's report."""
    TextEncoder("minilm", backend="openvino", cache_dir=cache / "fresh")
    assert "loss_type" not in capfd.readouterr().err


def test_auto_picks_the_first_installed_runtime_on_a_cpu_and_torch_on_a_gpu(monkeypatch):
    monkeypatch.setattr(runtimes, "_installed", lambda backend: backend == "onnxruntime")
    assert runtimes.resolve("auto", torch.device("cpu")) == "onnxruntime"
    assert runtimes.resolve("auto", torch.device("cpu"), "text") == "torch"  # faster than the runtimes for mpnet
    assert runtimes.resolve("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        runtimes.resolve("tensorrt", torch.device("cpu"))


def test_backend_and_precision_are_in_the_feature_key_and_a_run_is_rebuilt_from_them(cache):
    a = ImageEncoder("efficientnet-lite0", num_workers=0, backend="onnxruntime", cache_dir=cache)
    b = ImageEncoder("efficientnet-lite0", num_workers=0, backend="torch", precision="bfloat16")
    assert a.config != b.config
    config = json.loads(json.dumps(b.config))
    assert ImageEncoder.like(config, num_workers=0).config == b.config
    old = {k: v for k, v in config.items() if k not in ("backend", "precision")}  # a run from before runtimes
    assert ImageEncoder.like(old, num_workers=0).config["backend"] == "torch"


def test_progress_moves_within_a_task_in_this_process(monkeypatch):
    steps = []

    class Bar:
        def __init__(self, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def update(self, n):
            steps.append(n)

    def task(items):
        for _ in range(items):
            cluster.advance(1)
        cluster.advance(5)  # more than its share is not counted twice
        return items

    monkeypatch.setattr(cluster, "bar", Bar)
    assert cluster.run(task, [(3,), (2,)], weights=[3, 2]) == [3, 2]
    assert [n for n in steps if n] == [1] * 5  # item by item, never more than the tasks' weights


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_runtime_features_do_not_depend_on_the_thread_count(real, cache, backend):
    """What makes extraction the same bits in this process (all cores) and on a Dask worker (one)."""
    paths, texts = real
    before, out = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            images = ImageEncoder("efficientnet-lite0", num_workers=0, backend=backend, cache_dir=cache)
            text = TextEncoder("minilm", batch_size=4, backend=backend, cache_dir=cache)
            assert runtimes.threads() == n
            out.append((images.encode(paths[:8], progress=False)[0], text.encode(texts[:8], progress=False)))
    finally:
        torch.set_num_threads(before)
    assert out[0][0].tobytes() == out[1][0].tobytes() and out[0][1].tobytes() == out[1][1].tobytes()
