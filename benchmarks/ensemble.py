"""A K-member ensemble in one vmapped program vs K sequential fits with the same seeds.

    python benchmarks/ensemble.py                                   # simplenn and fse_phase1, K=4, mid range
    python benchmarks/ensemble.py --models fse_phase1 --members 8 --n-tracks 4160000 --epochs 20

Both sides use the real `Trainer.fit` path on the same data split (the recipe's), the same
seeds (member i = seed + i) and the same number of epochs (no early stopping, so the
members of both sides see identical steps). Prints wall time (compile apart), test
accuracy of the ensemble's mean vs the members', and the largest weight difference
between ensemble member i and sequential run i.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import dataclasses

import equinox as eqx

import jax
import numpy as np

from pidx.training.metrics import classification_metrics
from pidx.recipe import load_recipe
from pidx.runs import make_datamodule, make_model
from pidx.training import Trainer

RECIPES = Path(__file__).parent.parent / "recipes"


def fit(cfg, dm, model, state):
    trainer = Trainer(max_epochs=cfg.trainer.max_epochs, batch_size=cfg.trainer.batch_size,
                      seed=cfg.seed, enable_progress_bar=False, default_root_dir="/tmp/pidx-bench", callbacks=[])
    t0 = time.perf_counter()
    trainer.fit(model, dm, state=state)
    return trainer, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["simplenn", "fse_phase1"])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--range", default="mid")
    ap.add_argument("--n-tracks", type=int, default=400_000)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
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
        ens_acc = (m["accuracy"], m["balanced_accuracy"])
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
        rows.append((name, dm.train.num_tracks, ens_s, ens_trainer.summary["compile_s"], seq_s, seq_compile,
                     "{:.4f} / {:.4f}".format(*ens_acc), "{:.4f} / {:.4f}".format(*accs.mean(0)),
                     "{:.4f} / {:.4f}".format(*accs.max(0)), max_diff))
    print(f"\n| model | train tracks | ensemble wall s (compile) | {args.members} sequential wall s (compile) | "
          "speed-up | ensemble acc / bal. acc | members' mean | members' best | max |Δw| member vs sequential |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:,} | {r[2]:.1f} ({r[3]:.1f}) | {r[4]:.1f} ({r[5]:.1f}) | {r[4] / r[2]:.2f}x | "
              f"{r[6]} | {r[7]} | {r[8]} | {r[9]:.1e} |")


if __name__ == "__main__":
    main()
