"""MC → data: what the shift costs and how much of it each adaptation recovers, in one run.

    python benchmarks/domain_shift.py                                   # fse_phase1, full/mid/high
    python benchmarks/domain_shift.py --models fse_phase1 simplenn --ranges mid --out benchmarks/results

The simulator writes labelled MC (`--scenario mc`) and "collision data" (`--scenario data`:
`pidx.simulation.DATA_SCENARIO`'s TPC and TOF miscalibrations, TOF matching and abundances), each
with the exact oracle of its own physics. Per range and model, on the data scenario's test tracks:

- `mc_only`: the shipped recipe trained on MC (what is done today);
- `reweight`, `dann`: the same with `loss.adaptation` and the data's training file as `data.target`
  (its labels unread);
- `data_trained`: the recipe trained on labelled data (the reachable ceiling);
- `vector_oracle`, `oracle`: the data scenario's exact posterior given the recipe's 46 inputs and given
  every branch; `xgboost_mc`: XGBoost trained on the MC;
- `recovered`: (method − mc_only) / (data_trained − mc_only), for accuracy and NLL.

`same_*` rows: the adaptations with a target drawn from the MC's own scenario, on MC test tracks,
against `mc_only` there: what adapting costs when there is nothing to adapt to.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import ROOT, provenance, write_result  # noqa: E402
from render import domain_shift_table  # noqa: E402
from pidx.data.io import write_table  # noqa: E402
from pidx.data.layouts import O2_FILE_BRANCHES  # noqa: E402
from pidx.data.schema import ORACLE_COLUMNS, VECTOR_ORACLE_COLUMNS  # noqa: E402
from pidx.recipe import load_recipe  # noqa: E402
from pidx.runs import RunDir, fit_recipe, load_predictor, make_datamodule  # noqa: E402
from pidx.simulation import DATA_SCENARIO, simulate  # noqa: E402
from pidx.evaluation.calibration import negative_log_likelihood  # noqa: E402
from pidx.training.metrics import classification_metrics  # noqa: E402



def simulated(directory: Path, name: str, n: int, seed: int, scenario: dict) -> Path:
    path = directory / f"{name}.parquet"
    write_table(simulate(n_tracks=n, seed=seed, **scenario), path, root_types=O2_FILE_BRANCHES)
    return path


def fit(recipe_path: Path, overrides: list[str], directory: Path) -> Path:
    """`pidx fit` of the recipe with the overrides into the run directory `directory` (no baselines, no report)."""
    recipe = load_recipe(recipe_path, ["evaluation.baselines=[]", "evaluation.report=false", *overrides])
    run = RunDir.create(recipe.name, directory)
    fit_recipe(recipe, run, quiet=True)
    return run.path


def labelled_table(recipe_path: Path, path: Path):
    """The labelled tracks of `path` in the recipe's momentum range, read as a fit reads them."""
    dm = make_datamodule(load_recipe(recipe_path, [f"data.source={path}"]))
    table = dm.select_momentum(dm.load_table())
    return table.subset(np.flatnonzero(table.labels >= 0))


def scores(labels, probs) -> dict:
    m = classification_metrics(labels, probs)
    return {"accuracy": m["accuracy"], "macro_auc": m["macro_auc"], "nll": negative_log_likelihood(probs, labels)}


def run_range(model: str, rng_name: str, files: dict, epochs: int, work: Path) -> dict:
    recipe = ROOT / "recipes" / f"{model}_{rng_name}.yaml"
    common = [f"trainer.max_epochs={epochs}"]
    settings = {
        "mc_only": [f"data.source={files['mc']}"],
        "reweight": [f"data.source={files['mc']}", f"data.target={files['data']}", "loss.adaptation=reweight"],
        "dann": [f"data.source={files['mc']}", f"data.target={files['data']}", "loss.adaptation=dann"],
        "data_trained": [f"data.source={files['data']}"],
        "same_reweight": [f"data.source={files['mc']}", f"data.target={files['mc_target']}", "loss.adaptation=reweight"],
        "same_dann": [f"data.source={files['mc']}", f"data.target={files['mc_target']}", "loss.adaptation=dann"],
    }
    runs = {name: fit(recipe, [*overrides, *common], work / f"{model}_{rng_name}_{name}")
            for name, overrides in settings.items()}
    data_test, mc_test = labelled_table(recipe, files["data_test"]), labelled_table(recipe, files["mc_test"])
    rows = {}
    for name, path in runs.items():
        _, predictor, _ = load_predictor(RunDir.open(path))
        table = mc_test if name.startswith("same_") else data_test
        rows[name] = scores(table.labels, predictor.predict_table(table))
    rows["mc_only_on_mc"] = scores(mc_test.labels, load_predictor(RunDir.open(runs["mc_only"]))[1].predict_table(mc_test))
    rows["oracle"] = scores(data_test.labels, data_test.frame[list(ORACLE_COLUMNS)].to_numpy(np.float64))
    rows["vector_oracle"] = scores(data_test.labels, data_test.frame[list(VECTOR_ORACLE_COLUMNS)].to_numpy(np.float64))
    rows["xgboost_mc"] = xgboost_on_mc(recipe, files, data_test)
    base, ceiling = rows["mc_only"], rows["data_trained"]
    for name in ("reweight", "dann"):
        rows[name]["recovered"] = {k: recovered(base[k], rows[name][k], ceiling[k]) for k in ("accuracy", "nll")}
    for name in ("same_reweight", "same_dann"):
        rows[name]["cost_pp"] = 100 * (rows["mc_only_on_mc"]["accuracy"] - rows[name]["accuracy"])
    return rows


def recovered(base: float, value: float, ceiling: float) -> float | None:
    """The share of the gap between `base` and `ceiling` that `value` closes (None without a gap)."""
    gap = ceiling - base
    return None if abs(gap) < 1e-9 else (value - base) / gap


def xgboost_on_mc(recipe: Path, files: dict, data_test) -> dict:
    from pidx.evaluation.baselines import gbdt_features
    from pidx.evaluation.trees import xgboost_baseline

    dm = make_datamodule(load_recipe(recipe, [f"data.source={files['mc']}"])).setup()
    res = xgboost_baseline(data_test, train=dm.tables["train"], val=dm.tables["val"],
                           class_weights=np.ones(4), features=gbdt_features)
    return scores(data_test.labels, res["probs"])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["fse_phase1"])
    ap.add_argument("--ranges", nargs="+", default=["full", "mid", "high"])
    ap.add_argument("--mc-tracks", type=int, default=300_000, help="simulated MC tracks (before the momentum range)")
    ap.add_argument("--data-tracks", type=int, default=None,
                    help="simulated data tracks per file (default --mc-tracks: the data-trained ceiling sees as many "
                         "tracks as the MC-trained model)")
    ap.add_argument("--epochs", type=int, default=12, help="trainer.max_epochs of every fit")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=None, help="write domain_shift.json here")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pidx-domain-shift-") as tmp:
        work = Path(tmp)
        s, m = args.seed, args.mc_tracks
        n = args.data_tracks = args.data_tracks or m
        files = {"mc": simulated(work, "mc", m, s, {}), "data": simulated(work, "data", n, s + 1, DATA_SCENARIO),
                 "data_test": simulated(work, "data_test", n, s + 2, DATA_SCENARIO),
                 "mc_target": simulated(work, "mc_target", n, s + 3, {}),
                 "mc_test": simulated(work, "mc_test", n, s + 4, {})}
        results = {}
        for model in args.models:
            for rng_name in args.ranges:
                results[f"{model}/{rng_name}"] = run_range(model, rng_name, files, args.epochs, work / "runs")
                print(f"{model}/{rng_name} done at {time.perf_counter() - start:.0f} s", flush=True)
    out = {**provenance("domain_shift.py", argv), "scenario": {k: list(v) if isinstance(v, tuple) else v
                                                                         for k, v in DATA_SCENARIO.items()},
           "settings": vars(args) | {"out": None}, "results": results, "wall_s": time.perf_counter() - start}
    print(domain_shift_table(out))
    write_result(args.out, "domain_shift", out)
    return out


if __name__ == "__main__":
    main()
