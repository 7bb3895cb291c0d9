"""pidx vs the PyTorch peer, side by side in one run: training throughput per model and batch size.

    python benchmarks/throughput.py                       # all models, batch 1024 / 8192 / 65536
    python benchmarks/throughput.py --models fse_phase0 --batches 1024 --train-tracks 262144

pidx runs through the real `Trainer.fit` path: callbacks (ValidationMetrics with macro AUC) and a
validation pass every epoch included, compile time excluded (reported apart). The peer runs a
plain PyTorch loop with data on the device and a validation pass every epoch. Both train on the
same preprocessed arrays with the same focal loss, class weights and Adam; the first epoch of each
is a warm-up and not counted. Prints tracks/s, the ratio and both parameter counts; with `--out DIR`
also writes `DIR/throughput.json`, from which `render.py` writes the table in docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import pidx  # noqa: E402
from common import provenance, write_result  # noqa: E402
from pidx.data import ArrayDataModule, TrackArrays  # noqa: E402
from pidx.models import build_model  # noqa: E402

FSE_KW = {"hidden_dim": 256, "num_heads": 4}  # the seed README's FSE size (the performance target)


def data(n_train: int, n_val: int, seed: int = 231):
    # the legacy layout: the PyTorch peer is written for its 22 features and 4 groups
    dm = pidx.TrackDataModule(simulator=pidx.SimulatorConfig(n_tracks=int((n_train + n_val) / 0.7) + 1000,
                                                             seed=seed, layout="legacy"), momentum_range="full").setup()

    def take(a, n):
        return TrackArrays(*(x[:n] for x in a))

    return take(dm.train, n_train), take(dm.val, n_val), dm.class_counts


def pidx_run(name, train, val, batch, epochs, precision="f32", model_kwargs=None):
    kw = (FSE_KW if name.startswith("fse") else {}) if model_kwargs is None else model_kwargs
    model, state = build_model(name, pidx.DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), **kw)
    trainer = pidx.Trainer(max_epochs=epochs + 1, batch_size=batch, enable_progress_bar=False, precision=precision,
                           default_root_dir="/tmp/pidx-bench")
    trainer.fit(model, ArrayDataModule(train, val), state=state)
    timed = trainer.history[1:]
    tracks = sum(trainer.summary["steps_per_epoch"] * batch for _ in timed)
    params = sum(x.size for x in jax.tree.leaves(trainer.params))
    return {"tracks_per_s": tracks / sum(r["time/epoch_s"] for r in timed), "compile_s": trainer.summary["compile_s"],
            "val_accuracy": trainer.history[-1]["val/accuracy"], "parameters": params}


def torch_run(name, train, val, counts, batch, epochs, device, compile_, precision="f32", model_kwargs=None):
    import torch

    import peer_torch

    def tensors(a):
        return (torch.from_numpy(np.array(a.features)), torch.from_numpy(np.array(a.group_mask)),
                torch.from_numpy(np.array(a.label)).long())

    weights = torch.tensor(pidx.compute_class_weights("balanced", counts))
    kw = (FSE_KW if name.startswith("fse") else {}) if model_kwargs is None else model_kwargs
    return peer_torch.train(name, tensors(train), tensors(val), weights, batch_size=batch, epochs=epochs,
                            device=device, compile=compile_, model_kwargs=kw, precision=precision)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["simplenn", "dnn", "fse_phase0", "fse_phase1"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1024, 8192, 65536])
    ap.add_argument("--train-tracks", type=int, default=131072)
    ap.add_argument("--val-tracks", type=int, default=32768)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--torch-compile", action="store_true", help="also time the peer with torch.compile")
    ap.add_argument("--no-torch", action="store_true", help="pidx only")
    ap.add_argument("--out", type=Path, help="write throughput.json in this folder")
    args = ap.parse_args(argv)

    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}", flush=True)
    torch_device, peer = "cpu", None
    if not args.no_torch:
        import torch

        torch_device = "cuda" if device.platform == "gpu" and torch.cuda.is_available() else "cpu"
        peer = f"torch {torch.__version__} on {torch_device}, {torch.get_num_threads()} threads"
        print(f"peer: {peer}", flush=True)
    train, val, counts = data(args.train_tracks, args.val_tracks)
    print(f"{train.num_tracks:,} train / {val.num_tracks:,} validation tracks, {args.epochs} timed epochs\n")
    head = f"{'model':<11} {'batch':>6} {'pidx tracks/s':>14} {'peer tracks/s':>14} {'ratio':>6} " \
           f"{'compile s':>9} {'params pidx':>11} {'params peer':>11}"
    if args.torch_compile:
        head += f" {'peer+compile':>13}"
    print(head)
    print("-" * len(head))
    result = {**provenance("throughput.py", argv), "peer": peer, "precision": args.precision,
              "fse_size": FSE_KW, "train_tracks": train.num_tracks, "val_tracks": val.num_tracks,
              "timed_epochs": args.epochs, "rows": []}
    for name in args.models:
        for batch in args.batches:
            if batch > train.num_tracks:
                continue
            ours = pidx_run(name, train, val, batch, args.epochs, args.precision)
            row = {"model": name, "batch": batch, "pidx_tracks_per_s": ours["tracks_per_s"],
                   "pidx_compile_s": ours["compile_s"], "pidx_parameters": ours["parameters"],
                   "peer_tracks_per_s": None, "peer_parameters": None, "peer_compiled_tracks_per_s": None}
            line = f"{name:<11} {batch:>6} {ours['tracks_per_s']:>14,.0f}"
            if args.no_torch:
                line += f" {'-':>14} {'-':>6}"
            else:
                theirs = torch_run(name, train, val, counts, batch, args.epochs, torch_device, False)
                row.update(peer_tracks_per_s=theirs["tracks_per_s"], peer_parameters=theirs["parameters"])
                line += f" {theirs['tracks_per_s']:>14,.0f} {ours['tracks_per_s'] / theirs['tracks_per_s']:>6.2f}"
            line += f" {ours['compile_s']:>9.1f} {ours['parameters']:>11,}"
            line += f" {'-' if args.no_torch else format(theirs['parameters'], ','):>11}"
            if args.torch_compile and not args.no_torch:
                comp = torch_run(name, train, val, counts, batch, args.epochs, torch_device, True)
                row["peer_compiled_tracks_per_s"] = comp["tracks_per_s"]
                line += f" {comp['tracks_per_s']:>13,.0f}"
            print(line, flush=True)
            result["rows"].append(row)
    write_result(args.out, "throughput", result)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
