"""How much of the gap to the oracle is information the O2 46-value vector does not carry.

    python benchmarks/its_information_gap.py                      # 1 M simulated tracks, mid range
    python benchmarks/its_information_gap.py --n-tracks 4160000 --range 1.0 3.0

LightGBM (early-stopped on a validation split) on the 46 values `pid-onnx-inference` feeds its
model, and on the same plus the seven per-layer ITS cluster sizes, their mean and the centrality,
against the oracle (which sees every branch of the file) on the same test tracks. The simulator,
like ALICE's ITS, makes cluster sizes species-dependent; the vector keeps only their count.
"""

from __future__ import annotations

import argparse

import numpy as np

from pidx.data.layouts import ITS_BITS, ITS_LAYERS, O2_VECTOR_COLUMNS, o2_vector
from pidx.data.schema import CLASS_NAMES, CLASS_PDG
from pidx.simulation import SimulatorConfig, simulate


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-tracks", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--range", nargs=2, type=float, default=(0.7, 1.5), metavar=("LOW", "HIGH"))
    args = ap.parse_args()
    import lightgbm as lgb

    df = simulate(SimulatorConfig(n_tracks=args.n_tracks, seed=args.seed, tof_scenario="seed_scarce"))
    df = df[(df.p > args.range[0]) & (df.p < args.range[1])].reset_index(drop=True)
    labels = np.select([np.abs(df.mcPdg) == pdg for pdg in CLASS_PDG], range(len(CLASS_PDG)), -1)
    vec = o2_vector({c: df[c].to_numpy() for c in df.columns})
    x46 = np.stack([vec[c] for c in O2_VECTOR_COLUMNS], 1).astype(np.float64)
    packed = df.itsClusterSizes.to_numpy().astype(np.int64) & 0xFFFFFFFF
    sizes = np.stack([((packed >> (ITS_BITS * layer)) & 0xF).astype(float) for layer in range(ITS_LAYERS)], 1)
    sizes[sizes == 0] = np.nan
    with np.errstate(all="ignore"):
        x_more = np.concatenate([x46, sizes, np.nanmean(sizes, 1, keepdims=True), df[["centFT0C"]].to_numpy()], 1)
    n = len(df)
    idx = np.random.default_rng(0).permutation(n)
    train, val, test = idx[:int(0.7 * n)], idx[int(0.7 * n):int(0.8 * n)], idx[int(0.8 * n):]
    y = labels[test]
    oracle = df[[f"oracle_prob_{c}" for c in CLASS_NAMES]].to_numpy()[test]
    oracle = oracle / oracle.sum(1, keepdims=True)

    def row(name, probs):
        nll = -np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-30)))
        print(f"| {name} | {np.mean(probs.argmax(1) == y):.4f} | {nll:.4f} |", flush=True)

    print(f"{n:,} tracks in {args.range[0]} < p < {args.range[1]}, {len(test):,} test tracks\n")
    print("| method | accuracy | NLL |\n|---|---|---|")
    row("oracle", oracle)
    for name, x in (("LightGBM, 46-value vector", x46), ("LightGBM, + ITS cluster sizes + centrality", x_more)):
        model = lgb.LGBMClassifier(n_estimators=3000, learning_rate=0.05, num_leaves=64, verbose=-1, n_jobs=1)
        model.fit(x[train], labels[train], eval_set=[(x[val], labels[val])],
                  callbacks=[lgb.early_stopping(50, verbose=False)])
        row(name, model.predict_proba(x[test]))


if __name__ == "__main__":
    main()
