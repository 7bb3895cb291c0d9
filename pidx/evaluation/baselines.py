"""The classic methods, measured on the same test tracks as the networks.

- `bayes_pid`: argmax of the ALICE Bayesian PID probabilities; tracks without them
  fall back to the n-sigma method (and are also reported separately).
- `nsigma`: the species with the smallest combined n-sigma among those within 3σ in
  every available detector; tracks with no species within 3σ stay unidentified
  (they count against efficiency, never for purity).
- `gbdt`: scikit-learn's HistGradientBoostingClassifier on the model's inputs (the raw 21
  legacy columns, or the O2 layout's 46-value vector; NaN for missing, which it handles
  natively), trained on the same train split with the same class weighting as the network;
  like the network's, its probabilities are divided by the class weights (posteriors again).
- `xgboost`, `lightgbm`: the two libraries the field uses, with the seed author's settings,
  on the same inputs, early-stopped on the validation split (`pidx.evaluation.trees`; needs
  the `pidx[trees]` extra).

Columns are read through the table's file layout (`pidx.data.layouts`), so every baseline
runs on O2 and legacy tables alike.
- `oracle`: the simulator's exact posterior (simulated data only): the ceiling.
- `vector_oracle`: the simulator's exact posterior given only what the O2 46-value vector
  carries (O2-layout simulations): the ceiling of a model that reads that vector and nothing
  else (the oracle also sees the per-layer ITS cluster sizes that the vector drops).
"""

from __future__ import annotations

import functools
import time

import numpy as np

from ..data.io import TrackTable
from ..data.layouts import get_layout
from ..data.schema import BAYES_FLAG, NUM_CLASSES
from ..training.losses import compute_class_weights
from ..training.metrics import accuracy, balanced_accuracy, classification_metrics
from ..training.posterior import PosteriorMap
from .calibration import negative_log_likelihood
from .trees import lightgbm_baseline, xgboost_baseline

BASELINES = ("bayes_pid", "nsigma", "gbdt", "xgboost", "lightgbm", "oracle", "vector_oracle")
DEFAULT_BASELINES = ("bayes_pid", "nsigma", "gbdt", "oracle", "vector_oracle")  # the trees take minutes on millions of tracks
TREES = ("gbdt", "xgboost", "lightgbm")
CEILINGS = ("oracle", "vector_oracle")  # the exact posteriors; each gets its own gaps


def nsigma_scores(table: TrackTable, window: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(pred with -1 for unidentified, pseudo-probabilities ∝ exp(−χ²/2)) from TPC/TOF n-sigma."""
    f = table.frame
    chi2 = np.zeros((len(f), NUM_CLASSES))
    inside = np.ones((len(f), NUM_CLASSES), bool)
    any_det = np.zeros(len(f), bool)
    for flag, columns in get_layout(table.layout).nsigma.values():
        present = f[flag].to_numpy() == 1
        any_det |= present
        ns = np.stack([f[c].to_numpy(np.float64) for c in columns], axis=1)
        ns = np.where(present[:, None], ns, 0.0)
        chi2 += ns**2
        inside &= np.abs(ns) < window
    pred = np.where(inside.any(1) & any_det, np.argmin(np.where(inside, chi2, np.inf), axis=1), -1)
    logits = -0.5 * chi2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return pred, probs


def nsigma(test: TrackTable, **_) -> dict:
    pred, probs = nsigma_scores(test)
    return {"probs": probs, "pred": pred, "extra": {"unidentified_fraction": float(np.mean(pred < 0))}}


def bayes_pid(test: TrackTable, **_) -> dict:
    f = test.frame
    have = f[BAYES_FLAG].to_numpy() == 1
    ns_pred, ns_probs = nsigma_scores(test)
    bayes = np.nan_to_num(f[list(get_layout(test.layout).bayes)].to_numpy(np.float64), nan=0.25)
    probs = np.where(have[:, None], bayes, ns_probs)
    pred = np.where(have, bayes.argmax(1), ns_pred)
    extra = {"with_bayes": _subset(test.labels, probs, pred, have),
             "without_bayes_nsigma_fallback": _subset(test.labels, probs, pred, ~have),
             "bayes_available_fraction": float(have.mean())}
    return {"probs": probs, "pred": pred, "extra": extra}


def _subset(labels, probs, pred, sel):
    if not sel.any():
        return None
    m = classification_metrics(labels[sel], probs[sel], pred=pred[sel])
    return {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_auc", "n_tracks")}


def gbdt_features(table: TrackTable, extra_columns: tuple[str, ...] = ()) -> np.ndarray:
    """The layout's model inputs as the table holds them (NaN where a detector is absent), then
    `extra_columns` (the inputs a model reads beyond them), so trees see what the network sees."""
    f = table.frame
    columns = [c for c in get_layout(table.layout).model_inputs if c in f] + list(extra_columns)
    return np.stack([f[c].to_numpy(np.float64) for c in columns], axis=1)


def gbdt(test: TrackTable, *, train: TrackTable, class_weights, seed: int = 231, max_iter: int = 200,
         features=gbdt_features, **_) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier

    weights = np.asarray(class_weights, np.float64)
    model = HistGradientBoostingClassifier(max_iter=max_iter, early_stopping=True, random_state=seed)
    start = time.perf_counter()
    x = features(train)
    model.fit(x, train.labels, sample_weight=weights[train.labels])
    fit_s = time.perf_counter() - start
    probs = np.zeros((len(test), NUM_CLASSES))
    probs[:, model.classes_] = model.predict_proba(features(test))
    return {"probs": probs, "pred": None,
            "extra": {"fit_s": fit_s, "inputs": x.shape[1], "iterations": int(model.n_iter_),
                      "class_weights": weights.tolist()}}


def oracle(test: TrackTable, **_) -> dict | None:
    """The exact posterior: its argmax maximises accuracy (None for data without it)."""
    return _exact(test.oracle)


def vector_oracle(test: TrackTable, **_) -> dict | None:
    """The exact posterior given the 46-value vector (None for data without it)."""
    return _exact(test.vector_oracle)


def _exact(probs):
    if probs is None:
        return None
    return {"probs": probs / probs.sum(1, keepdims=True), "pred": None, "extra": {}}


def decision_metrics(labels, probs, train_counts, *, pred=None) -> dict:
    """`classification_metrics` of the decision `pred` (default argmax), the NLL of `probs`, and
    `weighted_decision`: accuracy and balanced accuracy of argmax_c P(c|x) / π_c with π the training
    abundances (balanced class weights), the decision maximising balanced accuracy."""
    labels, probs = np.asarray(labels), np.asarray(probs, np.float64)
    out = classification_metrics(labels, probs, pred=pred)  # purities count other species (label -1)
    known = labels >= 0  # the NLL and the decisions' accuracies are about π, K, p, e
    labels, probs = labels[known], probs[known]
    out["nll"] = negative_log_likelihood(probs, labels)
    weighted = (probs * compute_class_weights("balanced", train_counts)).argmax(1)
    out["weighted_decision"] = {"accuracy": accuracy(labels, weighted),
                                "balanced_accuracy": balanced_accuracy(labels, weighted)}
    return out


def run_baselines(tables: dict[str, TrackTable], names=DEFAULT_BASELINES, *, class_weights, seed: int = 231,
                  gbdt_max_iter: int = 200, extra_columns: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Run each baseline on `tables["test"]` (GBDT trained on `tables["train"]`).

    **Arguments:**

    - `tables`: the run's `train` and `test` track tables (and `val`, which the XGBoost and
      LightGBM baselines stop early on).
    - `names`: baselines to run (`BASELINES`).
    - `class_weights`: the 4 class weights the network was trained with (the trees' sample
      weights, divided out of their probabilities again).
    - `seed`, `gbdt_max_iter`: the GBDT's seed and boosting iterations.
    - `extra_columns`: columns the network reads beyond the layout's model inputs (extra
      inputs and groups); the trees read them too.

    Returns `(metrics, outputs)`: metrics per baseline (with its extras), and the
    per-track `probs`/`pred` for plots.
    """
    features = functools.partial(gbdt_features, extra_columns=tuple(extra_columns))
    funcs = {"bayes_pid": bayes_pid, "nsigma": nsigma, "gbdt": functools.partial(gbdt, features=features),
             "oracle": oracle, "vector_oracle": vector_oracle, "xgboost": _tree(xgboost_baseline, tables, features),
             "lightgbm": _tree(lightgbm_baseline, tables, features)}
    unknown = sorted(set(names) - set(funcs))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; available are {list(BASELINES)}")
    metrics, outputs = {}, {}
    test, counts = tables["test"], np.bincount(tables["train"].labels, minlength=NUM_CLASSES)
    for name in names:
        res = funcs[name](test, train=tables["train"], class_weights=class_weights, seed=seed, max_iter=gbdt_max_iter)
        if res is None:
            continue
        if name in TREES:  # fitted with sample weights w, they learn ∝ w_c P(c|x): divide w out
            res["probs"] = PosteriorMap.undoing(class_weights)(res["probs"])
        metrics[name] = {**decision_metrics(test.labels, res["probs"], counts, pred=res["pred"]), **res["extra"]}
        outputs[name] = res
    return metrics, outputs


def _tree(fit, tables, features):
    def run(test, *, class_weights, seed, **_):
        if "val" not in tables:
            raise ValueError("the xgboost and lightgbm baselines stop early on a validation split: pass tables['val']")
        return fit(test, train=tables["train"], val=tables["val"], class_weights=class_weights,
                   features=features, seed=seed)
    return run


def add_oracle_gaps(model_metrics: dict, baselines: dict) -> None:
    """Write the gaps to each oracle present (`oracle`, `vector_oracle`), in place; for the
    oracle (the vector oracle's keys say `vector_oracle` instead):

    - `gap_to_oracle_pp`: oracle accuracy − accuracy;
    - `balanced_gap_to_oracle_pp`: balanced accuracy of the oracle's weighted decision
      − that of the method's weighted decision (its own balanced accuracy when it has none);
    - `nll_gap_to_oracle`, `auc_gap_to_oracle`: NLL − the oracle's, the oracle's macro AUC − macro AUC.
    """
    for ceiling in CEILINGS:
        if ceiling not in baselines:
            continue
        o = baselines[ceiling]
        for m in (model_metrics, *baselines.values()):
            m[f"gap_to_{ceiling}_pp"] = 100.0 * (o["accuracy"] - m["accuracy"])
            bal = m.get("weighted_decision", {}).get("balanced_accuracy", m["balanced_accuracy"])
            m[f"balanced_gap_to_{ceiling}_pp"] = 100.0 * (o["weighted_decision"]["balanced_accuracy"] - bal)
            if "macro_auc" in m:
                m[f"auc_gap_to_{ceiling}"] = o["macro_auc"] - m["macro_auc"]
            if "nll" in m:
                m[f"nll_gap_to_{ceiling}"] = m["nll"] - o["nll"]


__all__ = ["BASELINES", "DEFAULT_BASELINES", "TREES", "CEILINGS", "nsigma_scores", "nsigma", "bayes_pid", "gbdt", "oracle", "vector_oracle",
           "decision_metrics", "run_baselines",
           "add_oracle_gaps"]
