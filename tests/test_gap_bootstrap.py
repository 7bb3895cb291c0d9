"""benchmarks/gap_bootstrap.py on a hand-made test_predictions.parquet: the differences it prints are the
metrics' differences, zero with a zero interval against an identical method, and of the right sign."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pidx.training.metrics import accuracy, macro_auc

ROOT = Path(__file__).parent.parent
SPECIES = ("pi", "ka", "pr", "el")


def _row(out: str, name: str) -> list[str]:
    return next(line for line in out.splitlines() if line.startswith(f"| {name} |")).strip("|").split("|")


def test_gaps_and_intervals(tmp_path):
    rng = np.random.default_rng(1)
    n = 4000
    labels = rng.integers(0, 4, n)
    truth = rng.dirichlet(np.ones(4), n) * 0.5 + 0.5 * np.eye(4)[labels]
    noisy = np.abs(truth + rng.normal(0, 0.3, truth.shape))
    noisy /= noisy.sum(1, keepdims=True)
    frame = pd.DataFrame({"label": labels, "p": rng.uniform(0.5, 2.0, n)})
    for who, probs in (("model", truth), ("twin", truth), ("worse", noisy)):
        for k, c in enumerate(SPECIES):
            frame[f"{who}_prob_{c}"] = probs[:, k]
    frame.to_parquet(tmp_path / "test_predictions.parquet")

    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gap_bootstrap.py"), str(tmp_path),
                           "--resamples", "20"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    twin = _row(proc.stdout, "twin")
    assert [c.strip() for c in twin[3:6]] == ["+0.000 [+0.000, +0.000]", "+0.00000 [+0.00000, +0.00000]",
                                              "+0.0000 [+0.0000, +0.0000]"]
    worse = _row(proc.stdout, "worse")
    acc_gap = 100 * (accuracy(labels, truth.argmax(1)) - accuracy(labels, noisy.argmax(1)))
    auc_gap = macro_auc(labels, truth) - macro_auc(labels, noisy)
    assert float(worse[3].split()[0]) == round(acc_gap, 3) > 0
    assert float(worse[4].split()[0]) == round(auc_gap, 5) > 0
    low, high = (float(x) for x in worse[3].split("[")[1].rstrip("] ").split(","))
    assert low <= acc_gap <= high

    frame.drop(columns=[f"twin_prob_{c}" for c in SPECIES] + [f"worse_prob_{c}" for c in SPECIES]).to_parquet(
        tmp_path / "test_predictions.parquet")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gap_bootstrap.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "needs model_prob_* and a baseline" in proc.stderr
