"""Species abundances of an unlabelled sample, by expectation–maximisation on posteriors.

The classic label-shift EM (Saerens, Latinne & Decaestecker, Neural Computation 14, 2002):
with posteriors P(c|x) under the training abundances π, the abundances π' of a new
sample maximise its likelihood at the fixed point of

    P'(c|x_i) ∝ P(c|x_i) · π'_c / π_c,      π'_c ← mean_i P'(c|x_i).

ALICE's Bayesian PID iterates its priors on data the same way. The estimate is only as
good as the posteriors are calibrated, which is why pidx fits a bias per species with
the temperature (Alexandari, Kundaje & Shrikumar, ICML 2020: bias-corrected calibration
+ EM is hard to beat at label shift).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def estimate_priors(posteriors, train_priors, *, tol: float = 1e-8, max_iter: int = 10_000) -> dict:
    """The abundances maximising the likelihood of an unlabelled sample.

    **Arguments:**

    - `posteriors`: `[N, C]` posteriors of the sample's tracks under `train_priors`.
    - `train_priors`: the abundances those posteriors assume.
    - `tol`: stop when no abundance moves by more than this in one iteration.
    - `max_iter`: iteration limit (reaching it is reported, not an error).

    Returns `{"priors": [C], "iterations": n, "converged": bool, "tracks": N}`.
    """
    post = np.asarray(posteriors, np.float64)
    base = np.asarray(train_priors, np.float64)
    if post.ndim != 2 or post.shape[1] != len(base):
        raise DataError(f"posteriors must be [N, {len(base)}], got {post.shape}")
    if len(post) == 0:
        raise DataError("estimating abundances needs at least one track")
    priors, converged, it = base.copy(), False, 0
    for it in range(1, max_iter + 1):
        w = post * (priors / base)
        new = (w / w.sum(1, keepdims=True)).mean(0)
        moved = np.max(np.abs(new - priors))
        priors = new
        if moved < tol:
            converged = True
            break
    return {"priors": priors.tolist(), "iterations": it, "converged": converged, "tracks": int(len(post))}


__all__ = ["estimate_priors"]
