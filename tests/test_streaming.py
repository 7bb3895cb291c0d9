"""Data bigger than memory (issue 16): the hash split, the seeded sample, the cache, chunked training."""

import json
import subprocess
import sys

import equinox as eqx
import jax
import numpy as np
import pandas as pd
import pytest

from helpers import CrashAt
from pidx.data import simulate
from pidx.data.datamodule import TrackDataModule
from pidx.data.files import write_table
from pidx.data.stream import split_codes, track_hash
from pidx.data.stream_cache import ChunkedTracks
from pidx.errors import DataError, RecipeError, TrainingError
from pidx.models import build_model
from pidx.models.ensemble import make_ensemble, member_key
from pidx.recipe import validate_recipe
from pidx.runs.build import make_datamodule
from pidx.training import CrossEntropy, ModelCheckpoint, Trainer, read_meta

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
