"""Does the test suite catch a broken model? Apply small breakages to a copy of pidx, run the tests
that should notice, and report which breakages survive.

    python benchmarks/mutants.py                 # every mutant (about 30 minutes on 2 cores)
    python benchmarks/mutants.py --only fse_ignores_detectors bf16_off

Each mutant replaces one piece of source text (the replacement must match exactly once, or the
mutant is reported as stale) in a temporary copy of the repository, then runs its tests with
`pytest -x`. A mutant is killed when a test fails. Not part of CI: it is slow, and its answer is a
table, printed and written as `mutants.json` in `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name: (what it breaks, file, old text, new text, tests that should fail)
MUTANTS = {
    "fse_ignores_detectors": (
        "FSE models see only kinematics: every detector token is zeroed", "pidx/models/fse.py",
        "return toks * mask[:, None].astype(x.dtype)",
        "return toks * (mask & (jnp.arange(len(mask)) == len(mask) - 1))[:, None].astype(x.dtype)",
        ["tests/test_trainer.py::test_fifth_detector_group_trains_through_unchanged_trainer",
         "tests/test_trainer.py::test_custom_group_embedding_trains",
         "tests/test_trainer.py::test_each_model_learns_from_the_detectors"]),
    "bf16_off": (
        "trainer.precision: bf16 computes in f32", "pidx/training/trainer.py",
        'PRECISIONS = {"f32": None, "bf16": jnp.bfloat16}', 'PRECISIONS = {"f32": None, "bf16": None}',
        ["tests/test_trainer.py::test_each_model_learns_in_bf16_with_f32_weights_and_state"]),
    "uniform_probabilities": (
        "the Trainer's test pass gives uniform probabilities", "pidx/training/trainer_eval.py",
        "        self.last_probs = np.asarray(probs)", "        self.last_probs = np.full(np.shape(probs), 0.25)",
        ["tests/test_parallel.py::test_pidx_fit_as_two_processes"]),
    "report_swaps_pi_ka": (
        "the predictions pidx report rebuilds have the π and K columns swapped", "pidx/runs/use.py",
        "entries, predictions = evaluate_in_memory(recipe, run, dm, predictor, predictor.raw_probs(dm.test), weights,",
        "entries, predictions = evaluate_in_memory(recipe, run, dm, predictor, predictor.raw_probs(dm.test)[:, [1, 0, 2, 3]], weights,",
        ["tests/test_cli_e2e.py::test_report_command_rebuilds_missing_predictions"]),
    "epoch_always_chunked": (
        "every epoch is split into scans of log_every_n_steps", "pidx/training/trainer.py",
        "chunk = min(self.log_every_n_steps, n_steps) if per_batch or timed else n_steps",
        "chunk = min(self.log_every_n_steps, n_steps)",
        ["tests/test_long_runs.py::test_progress_bar_off_a_terminal_keeps_the_epoch_one_scan"]),
    "flags_ignored": (
        "data: a detector's has* flag is ignored (every group present)", "pidx/data/validate.py",
        "            present = _flag_column(df, group.flag, source)\n",
        "            present = np.ones(len(df), bool)\n",
        ["tests/test_io.py", "tests/test_o2_layout.py"]),
    "implausible_scored": (
        "data: values no detector produces are scored as measurements", "pidx/data/validate.py",
        "                present = present & ~np.any(list(wrong.values()), axis=0)",
        "                present = present",
        ["tests/test_real_files.py::test_implausible_values_are_absent_and_counted_or_refused"]),
    "contamination_ignored": (
        "evaluation: other species do not count against purity", "pidx/training/metrics.py",
        "        m[\"purity\"] = tp / n_pred if n_pred else None",
        "        m[\"purity\"] = m[\"purity_without_contamination\"]",
        ["tests/test_real_files.py::test_fit_counts_other_species_and_purity_counts_them"]),
    "attention_ignores_mask": (
        "models: attention attends to absent groups", "pidx/models/fse.py",
        "        key_mask = mask | ~jnp.any(mask)",
        "        key_mask = jnp.ones_like(mask)",
        ["tests/test_models.py::test_an_absent_group_is_as_if_the_layout_had_none"]),
    "pooling_ignores_mask": (
        "models: the pooled representation averages absent groups too", "pidx/models/fse.py",
        "        w = mask.astype(h.dtype)",
        "        w = jnp.ones_like(mask, dtype=h.dtype)",
        ["tests/test_models.py::test_an_absent_group_is_as_if_the_layout_had_none"]),
    "class_weights_not_undone": (
        "posteriors: the class weights are not divided out", "pidx/training/posterior.py",
        "return cls(class_weights=tuple(np.where(w > 0, w, 1.0)), **fields)", "return cls(**fields)",
        ["tests/test_posteriors.py"]),
    "median_not_subtracted": (
        "preprocessing: inputs are scaled but not centred", "pidx/data/preprocess.py",
        "v = np.clip(squash((v - self.median[c]) / self.scale[c], self.knee), -self.clip, self.clip)",
        "v = np.clip(squash(v / self.scale[c], self.knee), -self.clip, self.clip)",
        ["tests/test_preprocess.py", "tests/test_export.py"]),
    "split_leaks_test": (
        "data: the validation split is drawn from the test split", "pidx/data/datamodule.py",
        "        return {\"train\": np.sort(train), \"val\": np.sort(val), \"test\": np.sort(test)}",
        "        return {\"train\": np.sort(train), \"val\": np.sort(test), \"test\": np.sort(test)}",
        ["tests/test_datamodule.py"]),
    "early_stopping_inverted": (
        "training: EarlyStopping keeps the worst epoch", "pidx/training/callbacks.py",
        'return value > best + min_delta if mode == "max" else value < best - min_delta',
        'return value > best + min_delta if mode == "max" else value > best + min_delta',
        ["tests/test_trainer.py::test_early_stopping_and_checkpoint_keep_the_best_epoch"]),
    "onnx_missing_sentinel": (
        "export: the graph does not treat the sentinel as missing", "pidx/export/graph.py",
        'conds += [g.op("Equal", values, g.const(float(s), "sentinel", np.float64)) for s in sentinels]',
        'conds += [g.op("Equal", values, g.const(float(s), "sentinel", np.float64)) for s in ()]',
        ["tests/test_export.py"]),
    "o2_values_form_dropped": (
        "export: vector options written as bare lists again", "pidx/export/o2physics.py",
        "config = {TASK: {k: ({\"values\": v} if TASK_CONFIGURABLES[k].startswith(_VECTOR) else v)",
        "config = {TASK: {k: (v if TASK_CONFIGURABLES[k].startswith(_VECTOR) else v)",
        ["tests/test_o2_config.py"]),
    "lock_released": (
        "runs: two processes may write one run directory", "pidx/runs/rundir.py",
        "        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n", "        pass\n",
        ["tests/test_real_files.py::test_a_second_fit_on_the_same_directory_is_refused"]),
    "physics_lost": (
        "preprocessing: the logarithmic tails become a hard clip at 2 (a point of physics lost)",
        "pidx/data/preprocess.py", "v = np.clip(squash((v - self.median[c]) / self.scale[c], self.knee), -self.clip, self.clip)",
        "v = np.clip((v - self.median[c]) / self.scale[c], -2.0, 2.0)",
        ["tests/test_physics_regression.py"]),
    "stacked_padding_reads_features": (
        "models: the stacked group embeddings pad with a repeated feature instead of zero",
        "pidx/models/embeddings.py", "jnp.pad(x[a:b], (0, widest - (b - a)))",
        "jnp.pad(x[a:b], (0, widest - (b - a)), mode='edge')",
        ["tests/test_models.py::test_stacked_embeddings_are_the_per_group_modules"]),
    "old_checkpoints_unread": (
        "training: checkpoints with one embedding module per group are no longer converted",
        "pidx/training/checkpoint.py", "    if has_stacked_embeddings(like):", "    if False:",
        ["tests/test_trainer.py::test_checkpoint_with_per_group_embeddings_resumes_converted"]),
}


def run_mutant(name: str, spec, workdir: Path) -> dict:
    what, path, old, new, tests = spec
    copy = workdir / name
    def skip(directory, names):  # the repository's own run directories, not the pidx.runs package
        return {n for n in names if n in (".git", "__pycache__") or n.endswith(".egg-info")
                or (Path(directory) == ROOT and n in ("runs", "benchmarks/out"))}

    shutil.copytree(ROOT, copy, ignore=skip)
    target = copy / path
    text = target.read_text()
    if text.count(old) != 1:
        return {"mutant": name, "breaks": what, "result": f"stale: the text to replace occurs {text.count(old)} times"}
    target.write_text(text.replace(old, new))
    env = {**os.environ, "PYTHONPATH": str(copy), "JAX_PLATFORMS": "cpu"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=copy,
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    failed = [line.split(" ")[1] for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    shutil.rmtree(copy, ignore_errors=True)
    result = "killed" if proc.returncode == 1 and failed else ("SURVIVED" if proc.returncode == 0 else
                                                               f"error (pytest exit {proc.returncode})")
    return {"mutant": name, "breaks": what, "result": result, "killed_by": failed[:2], "seconds": round(seconds)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(MUTANTS))
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pidx-mutants-") as tmp:
        for name in args.only or MUTANTS:
            row = run_mutant(name, MUTANTS[name], Path(tmp))
            rows.append(row)
            print(f"{row['result']:>10}  {name}: {row['breaks']}  {' '.join(row.get('killed_by', []))}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mutants.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| mutant | what it breaks | result | first failing test |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['mutant']} | {r['breaks']} | {r['result']} | {(r.get('killed_by') or ['–'])[0]} |")
    return 0 if all(r["result"] == "killed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
