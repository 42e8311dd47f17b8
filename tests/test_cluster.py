"""Dask: a real LocalCluster (worker processes) computes what this process computes."""
import os
import signal
import socket
import threading
import time
import warnings

import numpy as np
import pytest
import torch

from cmr_utils import cluster
from cmr_utils.features import store as F
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.features.images import ImageEncoder
from cmr_utils.features.text import TextEncoder
from cmr_utils.io import NpyRows, write_npy
from cmr_utils.fit.linear import RidgeCCA
from cmr_utils.fit.moments import Moments


@pytest.fixture(scope="module")
def client():
    with cluster.connect("local:2") as c:
        yield c


@pytest.fixture
def one_thread():
    """This process's torch on one thread, as each worker of local:2 on two cores: same arithmetic, same bytes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def extract(ds, cache, client):
    images = ImageEncoder("efficientnet-lite0", batch_size=8, num_workers=0)
    texts = TextEncoder("minilm", batch_size=8)
    return [F.image_features(ds, "train", images, cache, "fp", all_images=True, progress=False, client=client),
            F.text_features(ds, "train", "title", texts, cache, "fp", progress=False, client=client)]


def same_entries(a, b):
    for x, y in zip(a, b):
        for name in ("X.npy", "index.csv", "skipped.csv", "meta.json"):
            assert (x / name).read_bytes() == (y / name).read_bytes(), f"{x.name}/{name}"


def test_cluster_extraction_equals_in_process_byte_for_byte(demo_root, tmp_path, client, one_thread, monkeypatch):
    monkeypatch.setattr(F, "SHARD_SIZE", 16)
    ds = Recipe1M(demo_root)
    assert client.run(torch.get_num_threads) == dict.fromkeys(client.scheduler_info()["workers"], 1)
    here = extract(ds, tmp_path / "here", None)
    there = extract(ds, tmp_path / "there", client)
    same_entries(here, there)
    assert not list((tmp_path / "there" / "features").glob("*.parts"))  # merged once, shards cleaned up


def test_a_worker_killed_mid_extraction_does_not_change_the_result(demo_root, tmp_path, client, one_thread,
                                                                   monkeypatch):
    monkeypatch.setattr(F, "SHARD_SIZE", 4)
    ds = Recipe1M(demo_root)
    images = ImageEncoder("efficientnet-lite0", batch_size=4, num_workers=0)
    here = F.image_features(ds, "train", images, tmp_path / "here", "fp", all_images=True, progress=False)
    out, killed = {}, []

    def run():
        out["path"] = F.image_features(ds, "train", images, tmp_path / "there", "fp", all_images=True,
                                       progress=False, client=client)

    thread = threading.Thread(target=run)
    thread.start()
    parts, deadline = tmp_path / "there" / "features", time.time() + 300
    while not killed and thread.is_alive() and time.time() < deadline:
        done = list(parts.glob("*.parts/[!.]*.npz"))
        if done:  # some shards finished, others pending or running: kill a worker now
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(len(done))
        time.sleep(0.02)
    thread.join(300)
    n_shards = -(-sum(len(r.images) for r in ds.split("train")) // 4)
    assert killed and killed[0] < n_shards, "the extraction ended before a worker could be killed"
    same_entries([here], [out["path"]])
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_covariances_from_the_cluster_equal_in_process_bit_for_bit(tmp_path, client):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(5000, 4))
    X = (Z @ rng.normal(size=(4, 300)) + rng.normal(size=(5000, 300)) + 3).astype(np.float32)  # GEMMs big enough
    Y = (Z @ rng.normal(size=(4, 200)) + rng.normal(size=(5000, 200))).astype(np.float32)  # to be split by threads
    write_npy(tmp_path / "X.npy", X.shape, [X])
    write_npy(tmp_path / "Y.npy", Y.shape, [Y])
    rows = rng.permutation(5000)[:4000]  # pairs are a selection of the stored rows, as in training
    Xv, Yv = F.Rows([NpyRows(tmp_path / "X.npy")]).take(rows), F.Rows([NpyRows(tmp_path / "Y.npy")]).take(rows)
    here = Moments.of(Xv, Yv, chunk_size=256)  # this process's cores, chunks as threads
    there = Moments.of(Xv, Yv, chunk_size=256, client=client)  # one core per worker
    for name in ("mx", "my", "Cxx", "Cyy", "Cxy"):
        assert getattr(there, name).tobytes() == getattr(here, name).tobytes(), name
    # float32 products accumulated in float64 stay close to float64 arithmetic throughout
    exact = Moments.of(X[rows].astype(np.float64), Y[rows].astype(np.float64))
    np.testing.assert_allclose(here.Cxy, exact.Cxy, atol=1e-5 * np.abs(exact.Cxy).max())
    a = RidgeCCA(4, shrinkage=0.1).fit_moments(there)
    b = RidgeCCA(4, shrinkage=0.1).fit(X[rows].astype(np.float64), Y[rows].astype(np.float64))
    np.testing.assert_allclose(a.corrs_, b.corrs_, atol=1e-5)


def test_tasks_in_threads_are_folded_in_task_order():
    def task(i):
        time.sleep(0.3 if i == 0 else 0.0)  # the first finishes last
        return [i]
    assert cluster.run(task, [(i,) for i in range(7)], threads=3, progress=False, combine=lambda a, b: a + b) == \
        list(range(7))


def test_moments_tasks_carry_their_rows_packed(tmp_path, client):
    """A million pairs' row numbers are 16 MB as int64: sent that way with the tasks, Dask warns of a large graph."""
    n = 1_000_000
    X = np.arange(n, dtype=np.float32)[:, None]
    write_npy(tmp_path / "X.npy", X.shape, [X])
    rows = np.repeat(np.arange(n), np.random.default_rng(0).integers(0, 3, n))[:n]  # as text rows of pairs
    Xv = F.Rows([NpyRows(tmp_path / "X.npy")]).take(rows)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Sending large graph")
        m = Moments.of(Xv, Xv, client=client)
    np.testing.assert_allclose(m.mx, rows.mean())
    np.testing.assert_allclose(m.Cxx, [[np.var(rows, ddof=1)]], rtol=1e-6)


def test_a_local_cluster_leaves_this_process_all_its_cores(monkeypatch):
    """The workers get their share of the cores; notebook kernels started by this process still get them all.
    Workers keep glibc's memory trim threshold: Dask's 64 KiB makes torch encode 1.6x slower."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with cluster.connect("local:2") as c:
        assert set(c.run(lambda: os.environ["OMP_NUM_THREADS"]).values()) == {str(max(1, os.cpu_count() // 2))}
        assert set(c.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}
        assert "OMP_NUM_THREADS" not in os.environ and "MALLOC_TRIM_THRESHOLD_" not in os.environ


@pytest.mark.parametrize("address", ["local:0", "local", "local:2x", "localhost:8786", "tcp:/127.0.0.1:8786", ""])
def test_a_malformed_cluster_address_is_refused_naming_it_and_the_accepted_forms(address):
    with pytest.raises(ValueError) as e, cluster.connect(address):
        pass
    assert str(e.value) == ("cluster must be None, 'local:N' (N ≥ 1 worker processes) or a scheduler address "
                            f"'tcp://host:port', got {address!r}")


def test_a_tcp_address_joins_the_scheduler_running_there():
    from distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=":0") as running:
        address = running.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        with cluster.connect(address) as client:
            about = cluster.describe(client)
            assert about["cluster"] == address and about["workers"] == 1 and about["threads"] == 2
            assert about["dashboard"].startswith("http://127.0.0.1:") and about["dashboard"].endswith("/status")
            assert cluster.run(pow, [(2, 3), (3, 2), (5, 1)], client, progress=False) == [8, 9, 5]
        assert client.status == "closed" and running.status.name == "running"  # ours closed, theirs not stopped
    assert cluster.describe(None) == {"cluster": "in-process"}


def test_a_tcp_address_where_no_scheduler_listens_fails_naming_it(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    with socket.socket() as s:  # a free port, closed again: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError, match=rf"^cluster='tcp://127.0.0.1:{port}': no Dask scheduler answered within 2 s "
                                      r"\(.*\); is it running, and reachable from here\? Or use cluster='local:N' or None$"):
        with cluster.connect(f"tcp://127.0.0.1:{port}"):
            pass


def small_pipeline(root, cache, cluster_address):
    """extract -> fit -> evaluate on a small demo corpus, as the runner runs them (stages, one cluster)."""
    from cmr_utils.evaluate import stage as evaluation
    from cmr_utils.features import extract as extraction
    from cmr_utils.fit import sweep
    run_dir = root / "run"
    extraction.extract(run_dir, cache, demo_recipes=160, text_kinds=("title",), batch_size=8,
                   cluster=cluster_address, progress=False)
    sweep.fit(run_dir, cache, sweep.grid(models=("cca", "ridge"), shrinkage=(0.5,), latent_dims=(2, 10, 50)),
              cluster=cluster_address, progress=False)
    evaluation.evaluate(run_dir, scores=("correlation", "cosine"), bag_sizes=(40, 0), n_bags=3, select="kfold",
                    folds=3, cluster=cluster_address, progress=False)
    return (run_dir / "results.csv").read_bytes()


@pytest.mark.slow
def test_a_small_pipeline_on_the_cluster_gives_results_csv_byte_for_byte(tmp_path, client, one_thread):
    """Plain CCA whitens nearly singular covariances: any rounding difference in the sums or the projections
    flips near-ties in its ranks. In-process and on the cluster's workers, the arithmetic is the same.
    (Torch runs on one thread here as on each worker: image features still depend on torch's thread count.)"""
    here = small_pipeline(tmp_path / "here", tmp_path / "here" / "cache", None)
    there = small_pipeline(tmp_path / "there", tmp_path / "there" / "cache", client.scheduler.address)
    assert b",cca," in here
    assert here == there
