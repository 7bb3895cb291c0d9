"""pidx vs the PyTorch peer, side by side in one run: training throughput per model and batch size.

    python benchmarks/throughput.py                       # all models, batch 1024 / 8192 / 65536, FSE at both sizes
    python benchmarks/throughput.py --models fse_phase0 --batches 1024 --train-tracks 262144

pidx runs through the real `Trainer.fit` path: callbacks (ValidationMetrics with macro AUC) and a
validation pass every epoch included, compile time excluded (reported apart). The peer runs a
plain PyTorch loop with data on the device and a validation pass every epoch. Both train on the
same preprocessed arrays with the same focal loss, class weights and Adam; the first epoch of each
is a warm-up and not counted. Prints tracks/s, the ratio, both parameter counts and pidx's achieved
GFLOP/s (XLA's cost analysis of the compiled forward and backward pass × tracks/s) beside the CPU's
FP32 peak (`cpu_peak_gflops`: how it is computed is printed); with `--out DIR`
also writes `DIR/throughput.json`, from which `render.py` writes the table in docs/results.md.
"""

from __future__ import annotations

import argparse
import os
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

# FSE sizes: the seed README's (d = 256, 4 heads) and the recipes' own (the models' defaults, d = 64)
FSE_SIZES = {"seed": {"hidden_dim": 256, "num_heads": 4}, "recipe": {}}


def cpu_peak_gflops() -> tuple[float, str] | tuple[None, str]:
    """The CPU's FP32 peak: cores × clock × FLOPs per cycle, with 32 FLOPs per cycle and core for two
    256-bit FMA pipes (AVX2/AVX-512 on AMD Zen 3/4 and most Intel cores: 2 pipes × 8 lanes × 2)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, "unknown (no /proc/cpuinfo)"
    mhz = max(float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz"))
    cores = os.cpu_count() or 1
    if " fma" not in info:
        return None, "unknown (no FMA)"
    return cores * mhz * 1e-3 * 32, f"{cores} cores × {mhz / 1e3:.2f} GHz × 32 FLOP/cycle (2 FMA pipes × 8 FP32 lanes × 2)"


def gemm_gflops(repeats: int = 30) -> float:
    """The best rate of one f32 matrix product the size of an FSE step's largest ([4096, 256] × [256, 768]),
    compiled by XLA on the default device: what this machine's matrix products reach in practice (above
    the nominal peak where the cores run faster than the base clock /proc/cpuinfo reports)."""
    import jax.numpy as jnp

    a, b = jnp.ones((4096, 256), jnp.float32), jnp.ones((256, 768), jnp.float32)
    product = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(product(a, b))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(product(a, b))
        best = min(best, time.perf_counter() - t0)
    return 2 * 4096 * 256 * 768 / best / 1e9


def train_flops_per_track(model, state, batch: int, num_features: int, num_groups: int) -> float:
    """FLOPs of one train step (forward and backward) per track, from XLA's cost analysis of the compiled step."""
    import equinox as eqx

    from pidx.models.base import batched_forward

    def loss(params, static, x, mask, keys):  # training mode: dropout and BatchNorm's batch statistics
        logits, _ = batched_forward(eqx.combine(params, static), x, mask, state, keys)
        return jax.nn.logsumexp(logits, -1).mean()

    leaves, treedef = jax.tree.flatten(state)
    state = jax.tree.unflatten(treedef, leaves)  # a copy: a traced BatchNorm marks the state it reads as used
    params, static = eqx.partition(model, eqx.is_inexact_array)
    x = jax.ShapeDtypeStruct((batch, num_features), np.float32)
    mask = jax.ShapeDtypeStruct((batch, num_groups), bool)
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    grad = jax.jit(jax.grad(loss), static_argnums=1)
    cost = grad.lower(params, static, x, mask, keys).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / batch


def data(n_train: int, n_val: int, seed: int = 231):
    # the legacy layout: the PyTorch peer is written for its 22 features and 4 groups
    dm = pidx.TrackDataModule(simulator=pidx.SimulatorConfig(n_tracks=int((n_train + n_val) / 0.7) + 1000,
                                                             seed=seed, layout="legacy"), momentum_range="full").setup()

    def take(a, n):
        return TrackArrays(*(x[:n] for x in a))

    return take(dm.train, n_train), take(dm.val, n_val), dm.class_counts


def pidx_run(name, train, val, batch, epochs, precision="f32", model_kwargs=None):
    kw = {} if model_kwargs is None else model_kwargs
    model, state = build_model(name, pidx.DEFAULT_LAYOUT, key=jax.random.PRNGKey(0), **kw)
    flops = train_flops_per_track(model, state, batch, pidx.DEFAULT_LAYOUT.num_features,
                                  pidx.DEFAULT_LAYOUT.num_groups)
    trainer = pidx.Trainer(max_epochs=epochs + 1, batch_size=batch, enable_progress_bar=False, precision=precision,
                           default_root_dir="/tmp/pidx-bench")
    trainer.fit(model, ArrayDataModule(train, val), state=state)
    timed = trainer.history[1:]
    tracks = sum(trainer.summary["steps_per_epoch"] * batch for _ in timed)
    params = sum(x.size for x in jax.tree.leaves(trainer.params))
    rate = tracks / sum(r["time/epoch_s"] for r in timed)
    return {"tracks_per_s": rate, "compile_s": trainer.summary["compile_s"], "flops_per_track": flops,
            "step_blocks": trainer.summary["step_blocks"],
            "gflops_per_s": flops * rate / 1e9, "val_accuracy": trainer.history[-1]["val/accuracy"],
            "parameters": params}


def torch_run(name, train, val, counts, batch, epochs, device, compile_, precision="f32", model_kwargs=None):
    import torch

    import peer_torch

    def tensors(a):
        return (torch.from_numpy(np.array(a.features)), torch.from_numpy(np.array(a.group_mask)),
                torch.from_numpy(np.array(a.label)).long())

    weights = torch.tensor(pidx.compute_class_weights("balanced", counts))
    kw = {} if model_kwargs is None else model_kwargs
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
    ap.add_argument("--fse-sizes", nargs="+", default=["seed", "recipe"], choices=list(FSE_SIZES),
                    help="FSE at the seed README's size (d=256, 4 heads) and/or the recipes' (d=64)")
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
    peak, peak_how = cpu_peak_gflops() if device.platform == "cpu" else (None, "not computed off a CPU")
    print(f"FP32 peak: {'unknown' if peak is None else f'{peak:.0f} GFLOP/s'} ({peak_how})")
    gemm = gemm_gflops()
    print(f"one f32 matrix product [4096, 256] x [256, 768], best of 30: {gemm:.0f} GFLOP/s")
    head = f"{'model':<15} {'batch':>6} {'pidx tracks/s':>14} {'peer tracks/s':>14} {'ratio':>6} " \
           f"{'GFLOP/s':>8} {'blocks':>6} {'compile s':>9} {'params pidx':>11} {'params peer':>11}"
    if args.torch_compile:
        head += f" {'peer+compile':>13}"
    print(head)
    print("-" * len(head))
    result = {**provenance("throughput.py", argv), "peer": peer, "precision": args.precision,
              "peak_gflops": peak, "peak_how": peak_how, "gemm_gflops": gemm, "train_tracks": train.num_tracks,
              "val_tracks": val.num_tracks,
              "timed_epochs": args.epochs, "rows": []}
    cases = [(name, size, FSE_SIZES.get(size, {})) for name in args.models
             for size in (args.fse_sizes if name.startswith("fse") else [None])]
    for name, size, kw in cases:
        label = name if size is None else f"{name} d={kw.get('hidden_dim', 64)}"
        for batch in args.batches:
            if batch > train.num_tracks:
                continue
            ours = pidx_run(name, train, val, batch, args.epochs, args.precision, model_kwargs=kw)
            row = {"model": name, "size": size, "label": label, "batch": batch,
                   "pidx_tracks_per_s": ours["tracks_per_s"], "pidx_compile_s": ours["compile_s"],
                   "pidx_parameters": ours["parameters"], "flops_per_track": ours["flops_per_track"],
                   "pidx_gflops_per_s": ours["gflops_per_s"], "pidx_step_blocks": ours["step_blocks"],
                   "peer_tracks_per_s": None, "peer_parameters": None,
                   "peer_compiled_tracks_per_s": None}
            line = f"{label:<15} {batch:>6} {ours['tracks_per_s']:>14,.0f}"
            if args.no_torch:
                line += f" {'-':>14} {'-':>6}"
            else:
                theirs = torch_run(name, train, val, counts, batch, args.epochs, torch_device, False, model_kwargs=kw)
                row.update(peer_tracks_per_s=theirs["tracks_per_s"], peer_parameters=theirs["parameters"])
                line += f" {theirs['tracks_per_s']:>14,.0f} {ours['tracks_per_s'] / theirs['tracks_per_s']:>6.2f}"
            line += f" {ours['gflops_per_s']:>8.1f} {ours['step_blocks']:>6} {ours['compile_s']:>9.1f}"
            line += f" {ours['parameters']:>11,}"
            line += f" {'-' if args.no_torch else format(theirs['parameters'], ','):>11}"
            if args.torch_compile and not args.no_torch:
                comp = torch_run(name, train, val, counts, batch, args.epochs, torch_device, True, model_kwargs=kw)
                row["peer_compiled_tracks_per_s"] = comp["tracks_per_s"]
                line += f" {comp['tracks_per_s']:>13,.0f}"
            print(line, flush=True)
            result["rows"].append(row)
    write_result(args.out, "throughput", result)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
