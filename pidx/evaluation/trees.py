"""XGBoost and LightGBM baselines, as the field runs them (the `pidx[trees]` extra).

Settings are the seed author's (500 trees, learning rate 0.05, depth 6 for XGBoost and 64
leaves for LightGBM, row and column subsampling 0.8), on the same inputs as the network and
the HistGBDT (the layout's model inputs, NaN where a detector is absent, which both handle
natively), with the network's class weights as sample weights. Both stop early on the
run's own **validation** split (50 rounds without a better weighted log-loss), as the
network does; the test split is never seen before prediction.
"""

from __future__ import annotations

import importlib
import inspect
import time

import numpy as np

from ..data.io import TrackTable
from ..data.schema import NUM_CLASSES
from ..errors import PidxError

N_TREES, LEARNING_RATE, SUBSAMPLE, EARLY_STOPPING_ROUNDS = 500, 0.05, 0.8, 50


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PidxError(f"the {module} baseline needs the '{module}' package: pip install 'pidx[trees]'") from None


def _fit_inputs(features, train: TrackTable, val: TrackTable, class_weights):
    """(weights, train (x, y, w), validation (x, y, w)): inputs, labels and per-track class weights."""
    weights = np.asarray(class_weights, np.float64)
    return weights, *((features(t), t.labels, weights[t.labels]) for t in (train, val))


def _probs(model, x: np.ndarray) -> np.ndarray:
    probs = np.zeros((len(x), NUM_CLASSES))
    probs[:, np.asarray(model.classes_, int)] = model.predict_proba(x)
    return probs


def xgboost_baseline(test: TrackTable, *, train: TrackTable, val: TrackTable, class_weights, features,
                     seed: int = 231) -> dict:
    """XGBoost (`hist`, depth 6) trained on `train`, early-stopped on `val`, predicting `test`."""
    xgb = _require("xgboost")
    weights, (x, y, w), (xv, yv, wv) = _fit_inputs(features, train, val, class_weights)
    model = xgb.XGBClassifier(n_estimators=N_TREES, learning_rate=LEARNING_RATE, max_depth=6, subsample=SUBSAMPLE,
                              colsample_bytree=SUBSAMPLE, tree_method="hist", objective="multi:softprob",
                              eval_metric="mlogloss", early_stopping_rounds=EARLY_STOPPING_ROUNDS,
                              random_state=seed, n_jobs=0)
    start = time.perf_counter()
    model.fit(x, y, sample_weight=w, eval_set=[(xv, yv)], sample_weight_eval_set=[wv], verbose=False)
    fit_s = time.perf_counter() - start
    return {"probs": _probs(model, features(test)), "pred": None,
            "extra": {"fit_s": fit_s, "inputs": x.shape[1], "iterations": int(model.best_iteration) + 1,
                      "class_weights": weights.tolist(), "version": xgb.__version__}}


def lightgbm_baseline(test: TrackTable, *, train: TrackTable, val: TrackTable, class_weights, features,
                      seed: int = 231) -> dict:
    """LightGBM (64 leaves) trained on `train`, early-stopped on `val`, predicting `test`."""
    lgb = _require("lightgbm")
    weights, (x, y, w), (xv, yv, wv) = _fit_inputs(features, train, val, class_weights)
    model = lgb.LGBMClassifier(n_estimators=N_TREES, learning_rate=LEARNING_RATE, num_leaves=64, subsample=SUBSAMPLE,
                               subsample_freq=1, colsample_bytree=SUBSAMPLE, objective="multiclass",
                               random_state=seed, deterministic=True, force_row_wise=True, verbose=-1)
    start = time.perf_counter()
    # LightGBM 4.7 renamed eval_set to eval_X/eval_y (the old name warns)
    evaluation = ({"eval_X": (xv,), "eval_y": (yv,)} if "eval_X" in inspect.signature(model.fit).parameters
                  else {"eval_set": [(xv, yv)]})
    model.fit(x, y, sample_weight=w, **evaluation, eval_sample_weight=[wv],
              callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)])
    fit_s = time.perf_counter() - start
    return {"probs": _probs(model, features(test)), "pred": None,
            "extra": {"fit_s": fit_s, "inputs": x.shape[1], "iterations": int(model.best_iteration_ or N_TREES),
                      "class_weights": weights.tolist(), "version": lgb.__version__}}


__all__ = ["N_TREES", "LEARNING_RATE", "xgboost_baseline", "lightgbm_baseline"]
