"""MC → data: which part of the data scenario's mismatch a model trained on MC cannot undo, exactly.

    python benchmarks/shift_attribution.py                       # 1,000,000 tracks per component
    python benchmarks/shift_attribution.py --tracks 200000 --out benchmarks/results

No training: the simulator knows both physics. For each part of `pidx.simulation.DATA_SCENARIO` alone
(and all of it), it simulates data tracks and evaluates, on their 46 inputs, per momentum range:

- `mc_model`: the exact posterior of the MC's physics (`simulate(..., believed=MC)`): what a perfect
  model trained on MC outputs on these tracks, the best any MC-trained model can be;
- `mc_model_em`: the same re-weighted to the abundances label-shift EM finds in the data
  (`pidx priors`), which needs no labels;
- `data_oracle`: the exact posterior of the data's own physics, the ceiling.

Reweighting MC by p/(1−p) (or aligning representations, DANN) changes which tracks a model learns
from, not P(species | inputs) of the MC physics that a well-trained model converges to: with ample MC
it ends at `mc_model`. What stays between `mc_model_em` and `data_oracle` is what adapting to the
inputs cannot undo; `share` gives each part's gap in NLL as a fraction of the whole scenario's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import provenance, write_result  # noqa: E402
from render import shift_attribution_table  # noqa: E402
from pidx.data import MOMENTUM_RANGES  # noqa: E402
from pidx.data.schema import VECTOR_ORACLE_COLUMNS, pdg_to_class  # noqa: E402
from pidx.evaluation.calibration import negative_log_likelihood  # noqa: E402
from pidx.evaluation.priors import estimate_priors  # noqa: E402
from pidx.simulation import DATA_SCENARIO, SimulatorConfig, simulate  # noqa: E402

# each part of the data scenario: the simulator fields it sets
PARTS = {"tpc calibration": ("tpc_nsigma_shift", "tpc_nsigma_width"),
         "tof calibration": ("tof_time_offset_ns", "tof_nsigma_width"),
         "tof matching": ("tof_plateau",), "abundances": ("species_fractions",), "all": tuple(DATA_SCENARIO)}


def scores(labels, probs) -> dict:
    probs = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    return {"accuracy": float(np.mean(probs.argmax(1) == labels)),
            "nll": float(negative_log_likelihood(probs / probs.sum(1, keepdims=True), labels))}


def reweighted(probs, train_priors, priors):
    w = np.asarray(probs, np.float64) * (np.asarray(priors) / np.asarray(train_priors))
    return w / w.sum(1, keepdims=True)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=1_000_000, help="simulated tracks per part (before the ranges)")
    ap.add_argument("--ranges", nargs="+", default=["full", "mid", "high"])
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--out", type=Path, default=None, help="write shift_attribution.json here")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    mc = SimulatorConfig(n_tracks=args.tracks, seed=args.seed)
    mc_tracks = simulate(mc)
    mc_labels, mc_p = pdg_to_class(mc_tracks["mcPdg"].to_numpy()), mc_tracks["p"].to_numpy()
    results = {}
    for part, fields in PARTS.items():
        data, truth = simulate(mc, seed=args.seed + 1, believed=mc, **{f: DATA_SCENARIO[f] for f in fields})
        labels, p = pdg_to_class(data["mcPdg"].to_numpy()), data["p"].to_numpy()
        for rng_name in args.ranges:
            lo, hi = MOMENTUM_RANGES[rng_name]
            rows, mc_rows = (p > lo) & (p < hi), (mc_p > lo) & (mc_p < hi)
            train_priors = np.bincount(mc_labels[mc_rows], minlength=4) / mc_rows.sum()  # what the MC model assumes
            believed = truth["believed_vector_oracle"][rows]
            em = estimate_priors(believed, train_priors)["priors"]
            results[f"{part}/{rng_name}"] = {
                "mc_model": scores(labels[rows], believed),
                "mc_model_em": scores(labels[rows], reweighted(believed, train_priors, em)),
                "data_oracle": scores(labels[rows], data[list(VECTOR_ORACLE_COLUMNS)].to_numpy()[rows]),
                "tracks": int(rows.sum())}
        print(f"{part} done at {time.perf_counter() - start:.0f} s", flush=True)
    for key, row in results.items():  # each part's unrecoverable NLL as a share of the whole scenario's
        whole = results[f"all/{key.split('/')[1]}"]
        gap = row["mc_model_em"]["nll"] - row["data_oracle"]["nll"]
        row["share"] = gap / max(whole["mc_model_em"]["nll"] - whole["data_oracle"]["nll"], 1e-12)
    out = {**provenance("shift_attribution.py", argv), "parts": {k: list(v) for k, v in PARTS.items()},
           "settings": vars(args) | {"out": None}, "results": results, "wall_s": time.perf_counter() - start}
    print(shift_attribution_table(out))
    write_result(args.out, "shift_attribution", out)
    return out


if __name__ == "__main__":
    main()
