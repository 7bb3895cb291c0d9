"""The model's gaps to every baseline of a run, with paired-bootstrap intervals over its test tracks.

    python benchmarks/gap_bootstrap.py runs/fse_phase1_mid/<time>
    python benchmarks/gap_bootstrap.py RUN --resamples 200 --range 1.0 3.0   # inside a momentum range

Reads `RUN/test_predictions.parquet` (written by `pidx fit` with its baselines) and prints, for
each baseline in it (oracle, vector oracle, trees, ...), accuracy, macro AUC and NLL of model and
baseline, the difference model − baseline and its 95 % interval: the same tracks are resampled for
both, so the interval is the test split's sampling noise on the difference (it does not vary the
training seed). Then the per-species one-vs-rest AUCs, which show where a macro-AUC gap lies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from pidx.data.schema import CLASS_NAMES
from pidx.evaluation.calibration import negative_log_likelihood
from pidx.training.metrics import accuracy, macro_auc, per_class_auc


def measures(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Accuracy (%), macro AUC and NLL of one method on the given tracks."""
    return np.array([100.0 * accuracy(labels, probs.argmax(1)), macro_auc(labels, probs),
                     negative_log_likelihood(probs, labels)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run directory with test_predictions.parquet")
    ap.add_argument("--resamples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"), help="keep LOW < p < HIGH only")
    args = ap.parse_args()

    frame = pd.read_parquet(args.run / "test_predictions.parquet")
    if args.range:
        frame = frame[(frame.p > args.range[0]) & (frame.p < args.range[1])]
    labels = frame["label"].to_numpy()
    methods = sorted({c.rsplit("_prob_", 1)[0] for c in frame.columns if "_prob_" in c}, key=lambda m: (m != "model", m))
    if "model" not in methods or len(methods) < 2:
        raise SystemExit(f"{args.run}: test_predictions.parquet needs model_prob_* and a baseline's *_prob_* columns")
    probs = {m: frame[[f"{m}_prob_{c}" for c in CLASS_NAMES]].to_numpy(np.float64) for m in methods}

    rng = np.random.default_rng(args.seed)
    point = {m: measures(labels, p) for m, p in probs.items()}
    boot = {m: [] for m in methods}
    for _ in range(args.resamples):
        idx = rng.integers(0, len(labels), len(labels))
        for m, p in probs.items():
            boot[m].append(measures(labels[idx], p[idx]))
    boot = {m: np.array(v) for m, v in boot.items()}

    print(f"{args.run}: {len(labels):,} test tracks, {args.resamples} paired resamples (95 % intervals)\n")
    print("| baseline | model acc / AUC / NLL | baseline acc / AUC / NLL | model − baseline: acc (pp) | AUC | NLL |")
    print("|---|---|---|---|---|---|")
    def triple(v):  # accuracy back as a fraction, as metrics.json gives it
        return f"{v[0] / 100:.4f} / {v[1]:.5f} / {v[2]:.4f}"

    for m in methods[1:]:
        diff = point["model"] - point[m]
        lo, hi = np.percentile(boot["model"] - boot[m], [2.5, 97.5], axis=0)
        cells = [f"{diff[i]:+.{d}f} [{lo[i]:+.{d}f}, {hi[i]:+.{d}f}]" for i, d in enumerate((3, 5, 4))]
        print(f"| {m} | {triple(point['model'])} | {triple(point[m])} | " + " | ".join(cells) + " |")

    print("\n| method | " + " | ".join(f"AUC {c} vs rest" for c in CLASS_NAMES) + " |")
    print("|---|" + "---|" * len(CLASS_NAMES))
    for m, p in probs.items():
        print(f"| {m} | " + " | ".join("—" if a is None else f"{a:.5f}" for a in per_class_auc(labels, p)) + " |")


if __name__ == "__main__":
    main()
