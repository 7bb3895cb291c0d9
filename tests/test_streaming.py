"""Data bigger than memory: the hash split, the seeded sample, the cache, chunked training."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pandas as pd
import pytest

from helpers import assert_beats_quick_baselines, CrashAt
from pidx.simulation import simulate
from pidx.data.datamodule import TrackDataModule
from pidx.data.files import write_table
from pidx.data.group import file_shares
from pidx.data.stream import split_codes, track_hash
from pidx.data.stream_cache import ChunkedTracks, StreamCache
from pidx.errors import DataError, RecipeError, TrainingError
from pidx.models import build_model
from pidx.models.ensemble import make_ensemble, member_key
from pidx.recipe import validate_recipe
from pidx.runs.build import make_datamodule
from pidx.training import CrossEntropy, ModelCheckpoint, Trainer, read_meta

ROOT = Path(__file__).parent.parent
STREAM = dict(memory_budget="1MB", sample_tracks=4000, momentum_range="mid")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three Parquet files of 12k simulated O2 tracks each, and the same tracks as one ROOT file in
    another order."""
    root = tmp_path_factory.mktemp("stream-data")
    frames = [simulate(n_tracks=12_000, seed=seed) for seed in (1, 2, 3)]
    for i, frame in enumerate(frames):
        write_table(frame, root / "parquet" / f"part{i}.parquet")
    whole = pd.concat([frames[2], frames[0], frames[1]], ignore_index=True)
    write_table(whole, root / "root" / "all.root")
    return root


def streamed(source, **kw):
    return TrackDataModule(source=str(source), **{**STREAM, **kw}).setup()


def rows_of(split: ChunkedTracks) -> np.ndarray:
    """The split's tracks as sorted rows (order-free comparison)."""
    a = split.read(0, split.num_tracks)
    rows = np.column_stack([a.features, a.label, a.p])
    return rows[np.lexsort(rows.T[::-1])]


def test_hash_split_is_deterministic_and_has_the_asked_shares():
    frame = pd.DataFrame({"a": np.arange(200_000, dtype=np.float32), "b": np.full(200_000, np.nan, np.float32)})
    labels = np.zeros(200_000, np.int32)
    h = track_hash(frame, ("a", "b"), labels, seed=5)
    np.testing.assert_array_equal(h, track_hash(frame.iloc[::-1].reset_index(drop=True), ("a", "b"), labels,
                                                seed=5)[::-1])
    assert not np.array_equal(h, track_hash(frame, ("a", "b"), labels, seed=6))
    shares = np.bincount(split_codes(h, test_fraction=0.2, val_fraction=0.1), minlength=3) / len(h)
    np.testing.assert_allclose(shares, [0.7, 0.1, 0.2], atol=0.005)


def test_streamed_split_is_the_same_however_the_files_are_cut(files):
    parts = streamed(files / "parquet", chunk_tracks=5000)
    one = streamed(files / "root", chunk_tracks=7000)  # other files, order, pieces and chunks
    assert parts.streamed and isinstance(parts.train, ChunkedTracks)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(rows_of(getattr(parts, name)), rows_of(getattr(one, name)))
    # the seeded sample (and so the preprocessing) does not depend on the chunking either
    assert parts.preprocessor.median == one.preprocessor.median
    by_momentum = lambda t: t.frame.sort_values(["p", "eta"]).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(by_momentum(parts.tables["train"]), by_momentum(one.tables["train"]),
                                  check_dtype=False)


def test_every_in_range_track_is_used_and_under_the_budget_nothing_changes(files):
    in_memory = TrackDataModule(source=str(files / "parquet"), momentum_range="mid").setup()
    assert not in_memory.streamed and in_memory.summary().get("streamed") is None
    s = streamed(files / "parquet")
    n_memory = sum(getattr(in_memory, k).num_tracks for k in ("train", "val", "test"))
    assert sum(getattr(s, k).num_tracks for k in ("train", "val", "test")) == n_memory
    assert s.class_counts.sum() == s.train.num_tracks == s.summary()["train"]["n_tracks"]
    # the sample's positions point at the same tracks in the streamed test split
    rows = s.sample_positions["test"]
    np.testing.assert_allclose(s.test.p[rows], s.tables["test"].momentum.astype(np.float32))
    with pytest.raises(DataError, match="streamed from"):
        s.test.features


def fit(dm, root, *, callbacks=(), ckpt_path=None, max_epochs=2):
    model, state = build_model("simplenn", dm.layout, key=jax.random.PRNGKey(0), hidden=(32, 16))
    t = Trainer(max_epochs=max_epochs, batch_size=256, loss=CrossEntropy(), enable_progress_bar=False,
                default_root_dir=root, log_every_n_steps=3, callbacks=list(callbacks))
    t.fit(model, dm, state=state, ckpt_path=ckpt_path)
    return t


def test_chunked_training_resumes_exactly_inside_a_chunk(files, tmp_path):
    dm = streamed(files / "parquet", chunk_tracks=2048)
    straight = fit(dm, tmp_path / "straight")
    assert straight.summary["train_chunks"] == len(dm.train.chunks) > 2
    steps = straight.summary["steps_per_epoch"]
    assert steps == sum((b - a) // 256 for a, b in dm.train.chunks)
    with pytest.raises(RuntimeError, match="node lost"):
        fit(dm, tmp_path / "run", callbacks=[CrashAt(steps + 20), ModelCheckpoint(every_n_train_steps=4)])
    meta = read_meta(tmp_path / "run" / "checkpoints" / "last")
    assert meta["train_chunking"] == [2048, dm.train.num_tracks]
    assert 0 < meta["epoch_step"] < steps and meta["chunk_position"]["step_in_chunk"] >= 0
    # another chunking cannot continue that epoch exactly: refused
    with pytest.raises(TrainingError, match="train chunks"):
        fit(streamed(files / "parquet", chunk_tracks=4096), tmp_path / "other",
            ckpt_path=tmp_path / "run" / "checkpoints" / "last")
    resumed = fit(dm, tmp_path / "run", callbacks=[ModelCheckpoint()],
                  ckpt_path=tmp_path / "run" / "checkpoints" / "last")
    for a, b in zip(jax.tree.leaves((straight.params, straight.opt_state)),
                    jax.tree.leaves((resumed.params, resumed.opt_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.history[-1]["val/nll"] == straight.history[-1]["val/nll"]


def test_ensemble_member_equals_a_single_streamed_run_with_its_seed(files, tmp_path):
    dm = streamed(files / "parquet", chunk_tracks=2048)
    ens, ens_state = make_ensemble("simplenn", dm.layout, seeds=(3, 4), hidden=(16,))
    kw = dict(max_epochs=1, batch_size=256, loss=CrossEntropy(), enable_progress_bar=False, default_root_dir=tmp_path)
    t_ens = Trainer(seed=0, **kw).fit(ens, dm, state=ens_state)
    model, state = build_model("simplenn", dm.layout, key=member_key(4), hidden=(16,))
    t_one = Trainer(seed=4, **kw).fit(model, dm, state=state)
    member, _ = t_ens.model.member(1, t_ens.model_state)
    for a, b in zip(jax.tree.leaves(eqx.filter(member, eqx.is_inexact_array)),
                    jax.tree.leaves(eqx.filter(t_one.model, eqx.is_inexact_array))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4)


def test_streamed_evaluation_equals_the_same_tracks_in_memory(files, tmp_path):
    dm = streamed(files / "parquet", chunk_tracks=3000)
    t = fit(dm, tmp_path, max_epochs=1)
    probs = t.predict(dm.test)
    whole = dm.test.read(0, dm.test.num_tracks)
    np.testing.assert_allclose(probs, t.predict(whole), atol=1e-6)
    assert probs.shape == (dm.test.num_tracks, 4)


def test_memory_budget_errors_name_the_key():
    with pytest.raises(RecipeError, match="data: memory budget '2 GQ' is not a size"):
        make_datamodule(validate_recipe({"data": {"memory_budget": "2 GQ"}}))


def test_pidx_fit_streams_a_folder_end_to_end(files, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pidx.cli", "fit", "recipes/simplenn_mid.yaml", "--output", str(out),
           "--set", f"data.source={files / 'parquet'}", "--set", "data.memory_budget=1MB",
           "--set", "data.sample_tracks=1500", "--set", "trainer.max_epochs=2", "--set", "trainer.batch_size=512",
           "--set", "evaluation.baselines=[oracle,gbdt]", "--set", "evaluation.report=false"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "streamed in chunks of" in res.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["streamed"]["sample_tracks"] == 1500
    sample = metrics["test"]["baseline_sample"]
    assert sample["tracks"] == 1500 and "gap_to_oracle_pp" in sample
    assert metrics["test"]["n_tracks"] == metrics["data"]["test"]["n_tracks"] > 1500
    assert len(pd.read_parquet(out / "test_predictions.parquet")) == 1500
    assert_beats_quick_baselines(metrics)  # streamed training learns, not only runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit_streamed(files, out, cache, processes=1, extra=()):
    """`pidx fit` of simplenn_mid on the Parquet folder, streamed, as `processes` jax.distributed
    processes on 127.0.0.1 (`cache`: one PIDX_CACHE_DIR, or one per process)."""
    cmd = [sys.executable, "-m", "pidx.cli", "fit", "recipes/simplenn_mid.yaml", "--output", str(out),
           "--set", f"data.source={files / 'parquet'}", "--set", "data.memory_budget=1MB",
           "--set", "data.sample_tracks=1500", "--set", "data.chunk_tracks=3000", "--set", "trainer.max_epochs=2",
           "--set", "trainer.batch_size=512", "--set", "evaluation.baselines=[oracle]",
           "--set", "evaluation.report=false", "--quiet", *extra]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    group = {"PIDX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "PIDX_NUM_PROCESSES": str(processes)}
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={
        **env, "JAX_PLATFORMS": "cpu", "PIDX_CACHE_DIR": str(cache if isinstance(cache, Path) else cache[i]),
        **(group if processes > 1 else {}), "PIDX_PROCESS_ID": str(i)}) for i in range(processes)]
    return [(p.wait(timeout=600), p.stdout.read()) for p in procs]


def _cache(root: Path) -> StreamCache:
    (directory,) = root.glob("stream-*")
    return StreamCache(directory)


def test_two_processes_each_read_their_share_into_the_cache_one_process_builds(files, tmp_path):
    results = _fit_streamed(files, tmp_path / "two", tmp_path / "shared", processes=2)
    for rc, out in results:
        assert rc == 0, out[-3000:]
    alone = _fit_streamed(files, tmp_path / "one", tmp_path / "alone")
    assert alone[0][0] == 0, alone[0][1][-3000:]
    two, one = _cache(tmp_path / "shared"), _cache(tmp_path / "alone")
    # each process read its own share of the three files, and only that
    readers = [f["process"] for f in two.meta["files"]]
    assert sorted(set(readers)) == [0, 1] and [f["process"] for f in one.meta["files"]] == [0, 0, 0]
    assert [f["path"] for f in two.meta["files"]] == [f["path"] for f in one.meta["files"]]
    # ... into the very cache one process builds: samples, statistics and every array, bit for bit
    assert two.preprocessor.to_dict() == one.preprocessor.to_dict()
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(two.sample(name)[0].frame, one.sample(name)[0].frame)
        a, b = two.split(name, 10**6).read(0, 10**6), one.split(name, 10**6).read(0, 10**6)
        for x, y in zip((a.features, a.group_mask, a.label, a.p), (b.features, b.group_mask, b.label, b.p)):
            np.testing.assert_array_equal(x, y)
    # and the two processes trained the model one process trains (up to the order of float sums)
    m2, m1 = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("two", "one"))
    assert m2["training"]["processes"] == 2 and m1["training"]["processes"] == 1
    h2, h1 = (pd.read_csv(tmp_path / r / "history.csv") for r in ("two", "one"))
    np.testing.assert_allclose(h2["val/nll"], h1["val/nll"], rtol=1e-4)
    assert abs(m2["test"]["accuracy"] - m1["test"]["accuracy"]) < 0.002


def test_processes_that_do_not_share_the_cache_directory_stop_with_an_error(files, tmp_path):
    results = _fit_streamed(files, tmp_path / "run", [tmp_path / "c0", tmp_path / "c1"], processes=2)
    assert all(rc != 0 for rc, _ in results)
    assert "must share the cache directory (PIDX_CACHE_DIR)" in results[1][1]
    assert "process 1 of 2 failed" in results[0][1] or "must share the cache directory" in results[0][1]


def test_file_shares_balance_bytes_and_cover_every_file_once():
    shares = file_shares([5, 1, 4, 4, 2, 9], 3)
    assert sorted(j for s in shares for j in s) == list(range(6))
    assert [sum([5, 1, 4, 4, 2, 9][j] for j in s) for s in shares] == [9, 8, 8]
    assert file_shares([3], 4) == [[0], [], [], []]
