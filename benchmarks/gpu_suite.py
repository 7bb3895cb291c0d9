"""The GPU numbers in one command: training throughput against the PyTorch peer, the 12 recipes at the
seed's scale, inference speed, data-parallel scaling and bf16 against f32 accuracy.

    bash benchmarks/gpu_suite.sh OUT_DIR            # the full suite (aim: < 10 minutes on one H100)
    python benchmarks/gpu_suite.py OUT_DIR --small  # the same code paths at toy sizes (CPU; tests run this)

Writes OUT_DIR/gpu_suite.json and OUT_DIR/gpu_suite.md after every section (atomically), so a
suite stopped by a time limit keeps what it measured. Each section runs within what is left of
`--budget-s`; a section with no time left is recorded as skipped, never silently dropped.

Sections:
- `throughput`: train tracks/s through `Trainer.fit` (callbacks and per-epoch validation included,
  compile apart) against the PyTorch peer (eager, and `torch.compile` unless `--no-torch-compile`),
  per model × batch × precision; FSE at the recipes' size (d=64) and at the seed's (d=256, 4 heads).
- `recipes`: every recipe of recipes/ as shipped (seed's scale) through `pidx fit`'s own code
  path, with early stopping; wall time each and in total, compile apart.
- `inference`: `Predictor` tracks/s on a warm model, and ONNX Runtime per-track latency at batch 1
  (CUDA provider when there is one) and tracks/s at batch 65536.
- `scaling`: the devices JAX sees; data-parallel training is stated, not timed.
- `precision`: test accuracy of `fse_phase1_mid` in f32 and bf16 over several seeds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import pidx  # noqa: E402
from common import fit_quietly  # noqa: E402
from pidx.utils import atomic_write_json, atomic_write_text  # noqa: E402

ROOT = Path(__file__).parent.parent
# target: (value, "min" = at least / "max" = at most)
TARGETS = {"fse_d256_b1024_tracks_per_s": (2.5e6, "min"), "fse_d256_b65536_tracks_per_s": (8e6, "min"),
           "recipes_total_s": (180.0, "max"), "bf16_accuracy_gap_pp": (0.1, "max")}
# models: (name, keyword arguments); FSE at the recipes' size (d=64) and the seed's (d=256, 4 heads)
MODELS = (("simplenn", {}), ("dnn", {}), ("fse_phase0", {"hidden_dim": 64}), ("fse_phase1", {"hidden_dim": 64}),
          ("fse_phase0", {"hidden_dim": 256, "num_heads": 4}), ("fse_phase1", {"hidden_dim": 256, "num_heads": 4}))
FULL = dict(models=MODELS, batches=(1024, 8192, 65536), train_tracks=1_048_576, val_tracks=131_072, epochs=1,
            seeds=4, predict_tracks=1_000_000, recipes=None, recipe_overrides=())
# every code path once, at toy sizes: one batch, the MLP with BatchNorm and one FSE per size, one recipe
SMALL = dict(models=(MODELS[1], MODELS[3], MODELS[5]), batches=(1024,), train_tracks=4096, val_tracks=1024, epochs=1,
             seeds=1, predict_tracks=10_000, recipes=("simplenn_mid",),
             recipe_overrides=("data.n_tracks=20000", "trainer.max_epochs=1", "evaluation.report=false"))


def label(name, kw):
    return name if not kw else f"{name} d={kw['hidden_dim']}"


# ----------------------------------------------------------------------------- sections
def throughput(cfg, args, torch_device):
    import throughput as tp

    train, val, counts = tp.data(cfg["train_tracks"], cfg["val_tracks"])
    rows = []
    for precision in ("f32", "bf16"):
        for name, kw in cfg["models"]:
            for batch in cfg["batches"]:
                if batch > train.num_tracks:
                    continue
                ours = tp.pidx_run(name, train, val, batch, cfg["epochs"], precision, model_kwargs=kw)
                row = {"model": label(name, kw), "batch": batch, "precision": precision,
                       "pidx_tracks_per_s": ours["tracks_per_s"], "pidx_compile_s": ours["compile_s"],
                       "parameters": ours["parameters"]}
                if torch_device:
                    for compiled in (False, True) if not args.no_torch_compile else (False,):
                        peer = tp.torch_run(name, train, val, counts, batch, cfg["epochs"], torch_device, compiled,
                                            precision, model_kwargs=kw)
                        row["torch_compile_tracks_per_s" if compiled else "torch_tracks_per_s"] = peer["tracks_per_s"]
                rows.append(row)
                yield rows


def recipes(cfg, args, _):
    rows = []
    paths = sorted((ROOT / "recipes").glob("*.yaml"))
    chosen = args.recipes or cfg["recipes"]
    if chosen:
        paths = [p for p in paths if p.stem in chosen]
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            start = time.perf_counter()
            recipe, metrics = fit_quietly(path, cfg["recipe_overrides"], Path(tmp) / path.stem)
            t = metrics["training"]
            rows.append({"recipe": recipe.name, "wall_s": time.perf_counter() - start, "train_s": t["train_s"],
                         "compile_s": t["compile_s"], "fit_s": t["wall_s"], "epochs": t["epochs_run"],
                         "tracks_per_s": t["tracks_per_s"], "accuracy": metrics["test"]["accuracy"]})
            yield rows


def inference(cfg, args, _):
    import onnxruntime as ort
    from latency import onnx_timings

    from pidx.data.layouts import get_layout
    from pidx.export import export_onnx, input_columns
    from pidx.models import build_model
    from pidx.training import Predictor

    n = cfg["predict_tracks"]
    dm = pidx.TrackDataModule(simulator=pidx.SimulatorConfig(n_tracks=int(n / 0.2) + 1000, seed=5),
                              momentum_range="full").setup()
    model, state = build_model("fse_phase1", dm.layout, key=jax.random.PRNGKey(0), hidden_dim=64)
    predictor = Predictor(model, state, dm.preprocessor)
    arrays = dm.test
    predictor.raw_probs(arrays)  # compile
    t0 = time.perf_counter()
    predictor.raw_probs(arrays)
    dt = time.perf_counter() - t0
    rows = [{"measurement": f"Predictor, fse_phase1 d=64, {arrays.num_tracks:,} tracks, warm",
             "value": arrays.num_tracks / dt, "unit": "tracks/s"}]
    yield rows
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(model, state, dm.preprocessor, path, check=False)
        table = pidx.simulate(n_tracks=min(n, 200_000), seed=9)
        columns = list(input_columns(dm.preprocessor))
        x = get_layout(dm.preprocessor.track_layout).canonical(table)[columns].to_numpy(np.float32)
        for provider in providers:
            t = onnx_timings(path, x, provider)
            rows.append({"measurement": f"ONNX Runtime {provider}, batch 1, median", "value": t["median_us"],
                         "unit": "µs/track"})
            rows.append({"measurement": f"ONNX Runtime {provider}, batch 65536", "value": t["batch_tracks_per_s"],
                         "unit": "tracks/s"})
            yield rows


def scaling(cfg, args, _):
    devices = jax.devices()
    yield [{"devices": len(devices), "kind": devices[0].device_kind, "platform": devices[0].platform,
            "data_parallel": "not timed here (docs/scale.md)"
            if len(devices) > 1 else "one device visible: nothing to scale"}]


def precision(cfg, args, _):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(231, 231 + cfg["seeds"]):
            row = {"seed": seed}
            for prec in ("f32", "bf16"):
                _, metrics = fit_quietly(ROOT / "recipes" / "fse_phase1_mid.yaml",
                                         [f"seed={seed}", f"trainer.precision={prec}", *cfg["recipe_overrides"]],
                                         Path(tmp) / f"{seed}-{prec}")
                row[f"{prec}_accuracy"] = metrics["test"]["accuracy"]
            row["gap_pp"] = 100 * (row["f32_accuracy"] - row["bf16_accuracy"])
            rows.append(row)
            yield rows


SECTIONS = {"throughput": throughput, "recipes": recipes, "inference": inference, "scaling": scaling,
            "precision": precision}


# ----------------------------------------------------------------------------- report
def verdicts(results: dict) -> list[dict]:
    """The GPU targets against what was measured (None where the section did not run)."""
    tp = results["sections"].get("throughput", {}).get("rows", [])

    def fse256(batch):
        vals = [r["pidx_tracks_per_s"] for r in tp if r["model"].endswith("d=256") and r["batch"] == batch
                and r["precision"] == "f32"]
        return min(vals) if vals else None

    rec = results["sections"].get("recipes", {})
    prec = results["sections"].get("precision", {}).get("rows", [])
    measured = {"fse_d256_b1024_tracks_per_s": fse256(1024), "fse_d256_b65536_tracks_per_s": fse256(65536),
                "recipes_total_s": sum(r["wall_s"] for r in rec.get("rows", [])) if rec.get("complete") else None,
                "bf16_accuracy_gap_pp": abs(statistics.mean(r["gap_pp"] for r in prec)) if prec else None}
    out = []
    for key, (target, kind) in TARGETS.items():
        value = measured[key]
        met = None if value is None else (value >= target if kind == "min" else value <= target)
        out.append({"target": key, "wanted": ("≥ " if kind == "min" else "≤ ") + f"{target:g}", "measured": value,
                    "met": met})
    return out


def markdown(results: dict) -> str:
    lines = [f"# pidx GPU suite ({'small mode' if results['small'] else 'full'})", "",
             f"device: {results['device']}; jax {results['jax']}; torch {results['torch'] or 'not installed'}; "
             f"{results['elapsed_s']:.0f} s", ""]
    for name, sec in results["sections"].items():
        lines += [f"## {name}" + ("" if sec.get("complete") else f" ({sec.get('status', 'incomplete')})"), ""]
        rows = sec.get("rows") or []
        if rows:
            keys = list(dict.fromkeys(k for r in rows for k in r))
            lines.append("| " + " | ".join(keys) + " |")
            lines.append("|" + "---|" * len(keys))
            for r in rows:
                cells = [r.get(k) for k in keys]
                lines.append("| " + " | ".join(f"{v:,.4g}" if isinstance(v, float) else "–" if v is None else str(v)
                                               for v in cells) + " |")
            lines.append("")
    lines += ["## targets", "", "| target | wanted | measured | met |", "|---|---|---|---|"]
    for v in verdicts(results):
        shown = "–" if v["measured"] is None else f"{v['measured']:,.4g}"
        lines.append(f"| {v['target']} | {v['wanted']} | {shown} | {'–' if v['met'] is None else v['met']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for gpu_suite.json and gpu_suite.md")
    ap.add_argument("--small", action="store_true", help="toy sizes: the code paths in a minute or two on a CPU")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--recipes", nargs="+", help="recipe names (default: all of recipes/; --small: simplenn_mid)")
    ap.add_argument("--budget-s", type=float, default=570.0, help="stop starting work after this many seconds")
    ap.add_argument("--no-torch", action="store_true", help="pidx only")
    ap.add_argument("--no-torch-compile", action="store_true", help="the peer in eager mode only")
    args = ap.parse_args(argv)
    cfg = SMALL if args.small else FULL
    start = time.perf_counter()
    torch_version, torch_device = None, None
    if not args.no_torch:
        try:
            import torch

            torch_version = torch.__version__
            torch_device = "cuda" if jax.devices()[0].platform == "gpu" and torch.cuda.is_available() else "cpu"
        except ImportError:
            pass
    dev = jax.devices()[0]
    results = {"small": args.small, "device": f"{dev.device_kind} ({dev.platform}) × {jax.device_count()}, "
               f"{os.cpu_count()} CPU cores", "jax": jax.__version__, "torch": torch_version, "sections": {},
               "elapsed_s": 0.0, "targets": TARGETS}
    args.out.mkdir(parents=True, exist_ok=True)

    def save():
        results["elapsed_s"] = time.perf_counter() - start
        results["verdicts"] = verdicts(results)
        atomic_write_json(args.out / "gpu_suite.json", results)
        atomic_write_text(args.out / "gpu_suite.md", markdown(results))

    for name in args.sections:
        sec = results["sections"][name] = {"rows": [], "complete": False}
        if time.perf_counter() - start > args.budget_s:
            sec["status"] = "skipped: --budget-s spent"
            save()
            continue
        t0 = time.perf_counter()
        print(f"[{time.perf_counter() - start:6.0f} s] {name}", flush=True)
        try:
            for rows in SECTIONS[name](cfg, args, torch_device):
                sec["rows"] = list(rows)
                save()
                if time.perf_counter() - start > args.budget_s:
                    sec["status"] = "stopped: --budget-s spent"
                    break
            else:
                sec["complete"] = True
        except Exception as exc:  # one broken section must not cost the others their numbers
            sec["status"] = f"failed: {type(exc).__name__}: {exc}"
            print(sec["status"], file=sys.stderr, flush=True)
        sec["seconds"] = time.perf_counter() - t0
        save()
    print(markdown(results))
    return 0 if all(s["complete"] or s.get("status", "").startswith(("skipped", "stopped"))
                    for s in results["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
