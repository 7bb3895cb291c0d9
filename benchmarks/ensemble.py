"""A K-member ensemble in one vmapped program vs K sequential fits with the same seeds.

    python benchmarks/ensemble.py                                   # simplenn and fse_phase1, K=4, mid range
    python benchmarks/ensemble.py --models fse_phase1 --members 8 --n-tracks 4160000 --epochs 20

Both sides use the real `Trainer.fit` path on the same data split (the recipe's), the same
seeds (member i = seed + i) and the same number of epochs (no early stopping, so the
members of both sides see identical steps). Prints wall time (compile apart), test
accuracy of the ensemble's mean vs the members', and the largest weight difference
between ensemble member i and sequential run i; with `--out DIR` also writes `DIR/ensemble.json`,
from which `render.py` writes the table in docs/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import equinox as eqx

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import provenance, write_result  # noqa: E402
from pidx.recipe import load_recipe  # noqa: E402
from pidx.runs import make_datamodule, make_model  # noqa: E402
from pidx.training import Trainer  # noqa: E402
from pidx.training.metrics import classification_metrics  # noqa: E402

RECIPES = Path(__file__).parent.parent / "recipes"


def fit(cfg, dm, model, state):
    trainer = Trainer(max_epochs=cfg.trainer.max_epochs, batch_size=cfg.trainer.batch_size,
                      seed=cfg.seed, enable_progress_bar=False, default_root_dir="/tmp/pidx-bench", callbacks=[])
    t0 = time.perf_counter()
    trainer.fit(model, dm, state=state)
    return trainer, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["simplenn", "fse_phase1"])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--range", default="mid")
    ap.add_argument("--n-tracks", type=int, default=400_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", type=Path, help="write ensemble.json in this folder")
    args = ap.parse_args(argv)
    print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}); K={args.members}, "
          f"{args.epochs} epochs, {args.n_tracks:,} simulated tracks before the {args.range} cut")
    rows = []
    for name in args.models:
        sets = [f"data.n_tracks={args.n_tracks}", f"trainer.max_epochs={args.epochs}", "callbacks=[]"]
        cfg = load_recipe(RECIPES / f"{name}_{args.range}.yaml", sets)
        dm = make_datamodule(cfg).setup()
        labels = np.asarray(dm.test.label)
        ens_cfg = cfg.replace(trainer=dataclasses.replace(cfg.trainer, ensemble=args.members))
        ens_trainer, ens_s = fit(cfg, dm, *make_model(ens_cfg, dm.layout))
        m = classification_metrics(labels, ens_trainer.predict(dm.test))
        ens_acc = (float(m["accuracy"]), float(m["balanced_accuracy"]))
        seq_s, seq_compile, accs, max_diff = 0.0, 0.0, [], 0.0
        for i in range(args.members):
            member_cfg = cfg.replace(seed=cfg.seed + i)
            trainer, s = fit(member_cfg, dm, *make_model(member_cfg, dm.layout))
            seq_s += s
            seq_compile += trainer.summary["compile_s"]
            m = classification_metrics(labels, trainer.predict(dm.test))
            accs.append((m["accuracy"], m["balanced_accuracy"]))
            a = jax.tree.leaves(eqx.filter(ens_trainer.model.member(i), eqx.is_inexact_array))
            b = jax.tree.leaves(eqx.filter(trainer.model, eqx.is_inexact_array))
            max_diff = max(max_diff, max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a, b)))
        accs = np.array(accs)
        rows.append({"model": name, "train_tracks": dm.train.num_tracks, "ensemble_wall_s": ens_s,
                     "ensemble_compile_s": ens_trainer.summary["compile_s"], "sequential_wall_s": seq_s,
                     "sequential_compile_s": seq_compile, "ensemble_accuracy": ens_acc[0],
                     "ensemble_balanced_accuracy": ens_acc[1], "members_mean_accuracy": float(accs[:, 0].mean()),
                     "members_mean_balanced_accuracy": float(accs[:, 1].mean()),
                     "members_best_accuracy": float(accs[:, 0].max()),
                     "members_best_balanced_accuracy": float(accs[:, 1].max()), "max_weight_difference": max_diff})
    result = {**provenance("ensemble.py", argv), "members": args.members, "epochs": args.epochs,
              "range": args.range, "n_tracks": args.n_tracks, "rows": rows}
    print(f"\n| model | train tracks | ensemble wall s (compile) | {args.members} sequential wall s (compile) | "
          "speed-up | ensemble acc / bal. acc | members' mean | members' best | max |Δw| member vs sequential |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['train_tracks']:,} | {r['ensemble_wall_s']:.1f} ({r['ensemble_compile_s']:.1f}) | "
              f"{r['sequential_wall_s']:.1f} ({r['sequential_compile_s']:.1f}) | "
              f"{r['sequential_wall_s'] / r['ensemble_wall_s']:.2f}x | "
              f"{r['ensemble_accuracy']:.4f} / {r['ensemble_balanced_accuracy']:.4f} | "
              f"{r['members_mean_accuracy']:.4f} / {r['members_mean_balanced_accuracy']:.4f} | "
              f"{r['members_best_accuracy']:.4f} / {r['members_best_balanced_accuracy']:.4f} | "
              f"{r['max_weight_difference']:.1e} |")
    write_result(args.out, "ensemble", result)


if __name__ == "__main__":
    main()
