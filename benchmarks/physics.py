"""Physics table: every shipped recipe × full/mid/high against the trees and the oracle, one run.

    python benchmarks/physics.py                                   # the seed's scale (4.16 M tracks), all 12
    python benchmarks/physics.py --n-tracks 400000 --max-epochs 20 # a smaller, documented scale
    python benchmarks/physics.py --models simplenn fse_phase1 --ranges mid --trees xgboost lightgbm
    python benchmarks/physics.py --models fse_phase1 --ranges mid --no-full-range-model  # one range only

Each recipe is fitted as shipped (`pidx fit`, the same code path; only the scale overrides
given here change), and its posteriors are measured on its own test split next to the
baselines on the same tracks: HistGBDT, XGBoost, LightGBM (`pidx[trees]`), ALICE's Bayesian
PID and n-sigma, the oracle (the simulator's exact posterior) and the vector oracle (the exact
posterior given only what the recipes' 46-value input vector carries). The full-range model of
each architecture is also measured inside the mid and high ranges (its test tracks there):
one model for all momenta, conditioned on momentum, against the range-specific ones
(`--no-full-range-model` leaves the full range out unless `--ranges` names it: at the recipes'
scale, the full-range fits are most of the run).

Columns: accuracy (argmax of the posteriors), balanced accuracy of the class-weighted decision
argmax P(c|x)/π_c, macro AUC, NLL, top-label ECE, and the gaps to the oracle and to the vector
oracle on the same tracks (accuracy in pp, AUC, NLL). Writes the table as Markdown and JSON into `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import provenance  # noqa: E402
from pidx.data.datamodule import resolve_momentum_range
from pidx.data.schema import CLASS_NAMES
from pidx.evaluation.baselines import CEILINGS, decision_metrics
from pidx.evaluation.calibration import expected_calibration_error
from pidx.evaluation.tables import fmt_number, markdown_table
from pidx.recipe import load_recipe
from pidx.runs import RunDir, fit_recipe

RECIPES = Path(__file__).parent.parent / "recipes"
MODELS = ("simplenn", "dnn", "fse_phase0", "fse_phase1")
RANGES = ("full", "mid", "high")
CLASSIC = ("bayes_pid", "nsigma", "gbdt")


def _probs(frame, name):
    return frame[[f"{name}_prob_{c}" for c in CLASS_NAMES]].to_numpy(np.float64)


def measure(frame, name, train_counts) -> dict:
    """The table's numbers of method `name` on the tracks of `frame` (a test_predictions frame)."""
    labels, probs = frame["label"].to_numpy(), _probs(frame, name)
    pred = frame[f"{name}_pred"].to_numpy() if f"{name}_pred" in frame else None
    m = decision_metrics(labels, probs, train_counts, pred=pred)
    return {"accuracy": m["accuracy"], "balanced_accuracy": m["weighted_decision"]["balanced_accuracy"],
            "macro_auc": m["macro_auc"], "nll": m["nll"], "ece": expected_calibration_error(probs, labels),
            "tracks": int(len(labels))}


def with_gaps(rows: list[dict]) -> list[dict]:
    """Gaps to each ceiling's row measured on the same tracks (same range and evaluation set):
    `gap_pp`, `auc_gap`, `nll_gap` to the oracle, `vector_gap_pp`, … to the vector oracle."""
    for ceiling, prefix in (("oracle", ""), ("vector_oracle", "vector_")):
        found = {(r["range"], r["tracks_of"]): r for r in rows if r["method"].startswith(f"[{ceiling}]")}
        for r in rows:
            o = found.get((r["range"], r["tracks_of"]))
            if o is not None:
                r[f"{prefix}gap_pp"] = 100 * (o["accuracy"] - r["accuracy"])
                r[f"{prefix}auc_gap"] = o["macro_auc"] - r["macro_auc"]
                r[f"{prefix}nll_gap"] = r["nll"] - o["nll"]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--ranges", nargs="+", default=list(RANGES), choices=RANGES)
    ap.add_argument("--n-tracks", type=int, default=None, help="simulated tracks before the momentum cut "
                    "(default: the recipes', 4.16 M)")
    ap.add_argument("--max-epochs", type=int, default=None, help="default: the recipes' (30)")
    ap.add_argument("--trees", nargs="*", default=["xgboost", "lightgbm"], help="tree baselines besides HistGBDT")
    ap.add_argument("--set", dest="sets", nargs="*", default=[], help="further recipe overrides for every recipe")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/physics"))
    ap.add_argument("--no-full-range-model", action="store_true",
                    help="do not fit the full-range models only to measure them inside --ranges")
    args = ap.parse_args()
    sets = list(args.sets) + ["evaluation.report=false"]
    if args.n_tracks:
        sets.append(f"data.n_tracks={args.n_tracks}")
    if args.max_epochs:
        sets.append(f"trainer.max_epochs={args.max_epochs}")
    ranges = list(args.ranges) if "full" in args.ranges or args.no_full_range_model else ["full", *args.ranges]
    print(f"device: {jax.devices()[0].device_kind} ({jax.devices()[0].platform}); overrides: {' '.join(sets)}",
          flush=True)
    rows, started = [], time.perf_counter()
    for rng in ranges:
        for i, model in enumerate(args.models):
            baselines = [*CLASSIC, *args.trees, *CEILINGS] if i == 0 else list(CEILINGS)  # trees once per range
            recipe = load_recipe(RECIPES / f"{model}_{rng}.yaml", sets + [f"evaluation.baselines={baselines}"])
            run = RunDir.create(recipe.name, args.out / "runs" / recipe.name, overwrite=True)
            t0 = time.perf_counter()
            metrics = fit_recipe(recipe, run, quiet=True)
            frame = run.predictions()
            counts = [metrics["data"]["train"]["class_counts"][c] for c in CLASS_NAMES]
            print(f"{recipe.name}: {metrics['training']['epochs_run']} epochs, {time.perf_counter() - t0:.0f} s, "
                  f"accuracy {metrics['test']['accuracy']:.4f}", flush=True)
            for name in ["model", *(b for b in baselines if f"{b}_prob_pi" in frame)]:
                if name in CEILINGS and i > 0:
                    continue  # the same test tracks as the first model's
                rows.append({"range": rng, "method": model if name == "model" else f"[{name}]", "tracks_of": rng,
                             **measure(frame, name, counts)})
            if rng == "full":  # one model for all momenta, inside each range, against the oracle there
                for sub in (r for r in args.ranges if r != "full"):
                    lo, hi = resolve_momentum_range(sub)
                    inside = frame[(frame["p"] > lo) & (frame["p"] < hi)]
                    for name in ("model", *CEILINGS) if i == 0 else ("model",):  # every full model: one split
                        if name == "model" or f"{name}_prob_pi" in frame:
                            rows.append({"range": sub, "method": f"{model} (full-range model)" if name == "model"
                                         else f"[{name}] (full-range test tracks)", "tracks_of": "full split",
                                         **measure(inside, name, counts)})
    rows = [r for r in with_gaps(rows) if r["range"] in args.ranges]
    head = ["range", "method", "accuracy", "bal. acc. (weighted)", "macro AUC", "NLL", "ECE", "gap to oracle (pp)",
            "AUC gap", "NLL gap", "gap to vector oracle (pp)", "AUC gap", "NLL gap", "test tracks"]
    table = markdown_table(head, [[r["range"], r["method"], fmt_number(r["accuracy"]),
                                   fmt_number(r["balanced_accuracy"]), fmt_number(r["macro_auc"]), fmt_number(r["nll"]),
                                   fmt_number(r["ece"]), fmt_number(r.get("gap_pp"), 2), fmt_number(r.get("auc_gap")),
                                   fmt_number(r.get("nll_gap")), fmt_number(r.get("vector_gap_pp"), 2),
                                   fmt_number(r.get("vector_auc_gap")), fmt_number(r.get("vector_nll_gap")),
                                   f"{r['tracks']:,}"] for r in rows])
    print(table)
    print(f"total {time.perf_counter() - started:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "physics.md").write_text(table)
    (args.out / "physics.json").write_text(json.dumps({**provenance("physics.py"), "overrides": sets, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
