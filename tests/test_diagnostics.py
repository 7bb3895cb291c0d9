"""The report's diagnostics on hand-made data: the overtraining check notices a model that scores its
train tracks higher, the input figures and the importance spread come from the code paths the report uses."""

import numpy as np
import pandas as pd

from pidx.data.schema import DEFAULT_LAYOUT
from pidx.evaluation.diagnostics import input_correlations, input_distributions, overtraining


def _probs(rng, labels, sharpness):
    """Posteriors that put `sharpness`-dependent weight on the true species."""
    logits = rng.normal(size=(len(labels), 4))
    logits[np.arange(len(labels)), labels] += sharpness
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


def test_overtraining_check_tells_memorised_from_honest():
    rng = np.random.default_rng(0)
    train_labels, test_labels = rng.integers(0, 4, 4000), rng.integers(0, 4, 4000)
    test = _probs(rng, test_labels, 1.5)
    honest = overtraining(_probs(rng, train_labels, 1.5), train_labels, test, test_labels)
    memorised = overtraining(_probs(rng, train_labels, 3.0), train_labels, test, test_labels)
    for sp in ("pi", "ka", "pr", "el"):
        assert honest[sp]["p_value"] > 0.001 and memorised[sp]["p_value"] < 1e-10
        assert memorised[sp]["ks_statistic"] > 3 * honest[sp]["ks_statistic"]
        assert honest[sp]["test_tracks"] == int(np.sum(test_labels == ("pi", "ka", "pr", "el").index(sp)))
    absent = overtraining(test[:10], np.zeros(10, int), test, test_labels)
    assert absent["ka"]["p_value"] is None and absent["ka"]["train_tracks"] == 0


def test_input_figures_and_correlations(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    columns = [c for g in DEFAULT_LAYOUT.groups for c in g.columns]
    frame = pd.DataFrame(rng.normal(size=(n, len(columns))), columns=columns)
    first, second = columns[0], columns[1]
    frame[second] = 2 * frame[first] + 0.01 * rng.normal(size=n)  # correlated by construction
    flags = {g.flag for g in DEFAULT_LAYOUT.groups if g.flag}
    for flag in flags:
        frame[flag] = rng.random(n) < 0.5
    labels = rng.integers(0, 4, n)
    path = input_distributions(frame, DEFAULT_LAYOUT, labels, tmp_path / "inputs.png")
    assert path.stat().st_size > 20_000
    path, corr = input_correlations(frame, DEFAULT_LAYOUT, tmp_path / "corr.png")
    assert corr.shape == (len(columns), len(columns)) and corr[0, 1] > 0.99 and abs(corr[0, 2]) < 0.1
