"""bf16 against f32: paired fits of one recipe over several seeds, test accuracy, AUC and NLL of each.

    python benchmarks/precision.py                                  # fse_phase1_mid, 400 k tracks, seeds 231-234
    python benchmarks/precision.py --n-tracks 4160000 --seeds 231 232 233 234 235 236 --out benchmarks/results

Each seed sets both the data split and the training randomness and is fitted once with
`trainer.precision=f32` and once with `bf16` through `pidx fit`'s own code path (early stopping on
the validation NLL; no baselines or report). Prints each pair, the mean difference bf16 − f32 with
its standard error, and the seed-to-seed spread of f32; with `--out DIR` writes `DIR/precision.json`,
from which `render.py` writes the table in docs/results.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import ROOT, fit_quietly, provenance, write_result  # noqa: E402

MEASURES = ("accuracy", "balanced_accuracy", "macro_auc", "nll")


def summary(rows: list[dict]) -> list[dict]:
    """Per measure: the mean of bf16 − f32 over seeds, its standard error and the f32 spread (std)."""
    out = []
    for m in MEASURES:
        diffs = [r["bf16"][m] - r["f32"][m] for r in rows]
        f32 = [r["f32"][m] for r in rows]
        n = len(rows)
        out.append({"measure": m, "mean_difference": statistics.mean(diffs),
                    "standard_error": statistics.stdev(diffs) / n ** 0.5 if n > 1 else None,
                    "f32_spread": statistics.stdev(f32) if n > 1 else None})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="fse_phase1_mid")
    ap.add_argument("--n-tracks", type=int, default=400_000)
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[231, 232, 233, 234])
    ap.add_argument("--out", type=Path, help="write precision.json in this folder")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            row = {"seed": seed}
            for precision in ("f32", "bf16"):
                _, metrics = fit_quietly(ROOT / "recipes" / f"{args.recipe}.yaml",
                                         [f"seed={seed}", f"trainer.precision={precision}",
                                          f"data.n_tracks={args.n_tracks}", f"trainer.max_epochs={args.max_epochs}"],
                                         Path(tmp) / f"{seed}-{precision}")
                row[precision] = {**{m: metrics["test"][m] for m in MEASURES},
                                  "epochs": metrics["training"]["epochs_run"],
                                  "tracks_per_s": metrics["training"]["tracks_per_s"]}
            rows.append(row)
            print(" ".join(f"{p} " + " / ".join(f"{row[p][m]:.4f}" for m in MEASURES) for p in ("f32", "bf16")),
                  f"(seed {seed}; accuracy / balanced accuracy / macro AUC / NLL)", flush=True)
    result = {**provenance("precision.py", argv), "recipe": args.recipe, "n_tracks": args.n_tracks,
              "max_epochs": args.max_epochs, "rows": rows, "summary": summary(rows)}
    for s in result["summary"]:
        se = "–" if s["standard_error"] is None else f"{s['standard_error']:.5f}"
        print(f"{s['measure']}: bf16 − f32 = {s['mean_difference']:+.5f} ± {se}")
    write_result(args.out, "precision", result)
    return result


if __name__ == "__main__":
    main()
