"""Working points: selecting one species at a target purity or efficiency.

A physicist does not take the argmax: they select kaons with `P(K | track) > t`, with t
chosen so that the selection has, say, 95 % purity. pidx chooses t on the **validation**
split and measures what it gives on the **test** split, overall and per momentum bin,
so the reported numbers are what a new sample of the same kind gets.

- `WorkingPoint.parse("ka:purity=0.95")`: the target.
- `choose_threshold`: the threshold on validation posteriors.
- `selection_performance`: efficiency and purity of a boolean selection, per momentum bin.
- `efficiency_purity_curve`, `efficiency_at_purity`: the whole trade-off of a score.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from ..data.schema import CLASS_NAMES
from ..training.metrics import DEFAULT_MOMENTUM_BINS, clopper_pearson

STANDARD_PURITIES = (0.90, 0.95, 0.99)


@dataclasses.dataclass(frozen=True)
class WorkingPoint:
    """Select `species` at `target` purity or efficiency.

    **Arguments:**

    - `species`: one of `pi`, `ka`, `pr`, `el`.
    - `kind`: `purity` (the most efficient selection with at least that purity) or
      `efficiency` (the purest selection with at least that efficiency).
    - `target`: in (0, 1).
    """

    species: str
    kind: Literal["purity", "efficiency"]
    target: float

    def __post_init__(self):
        if self.species not in CLASS_NAMES:
            raise ValueError(f"working point species must be one of {list(CLASS_NAMES)}, got {self.species!r}")
        if self.kind not in ("purity", "efficiency"):
            raise ValueError(f"working point kind must be 'purity' or 'efficiency', got {self.kind!r}")
        if not 0 < float(self.target) < 1:
            raise ValueError(f"working point target must be in (0, 1), got {self.target}")
        object.__setattr__(self, "target", float(self.target))

    @classmethod
    def parse(cls, text: str) -> "WorkingPoint":
        """`species:kind=target`, e.g. `ka:purity=0.95` or `pr:efficiency=0.9`."""
        try:
            species, rest = text.split(":", 1)
            kind, target = rest.split("=", 1)
            return cls(species.strip(), kind.strip(), float(target))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"working point {text!r}: {exc}; expected species:purity=X or species:efficiency=X "
                             f"with species in {list(CLASS_NAMES)}, e.g. ka:purity=0.95") from None

    @property
    def index(self) -> int:
        return CLASS_NAMES.index(self.species)

    @property
    def name(self) -> str:
        return f"{self.species}:{self.kind}={self.target:g}"

    @property
    def column(self) -> str:
        """The boolean column `pidx predict` writes: `select_ka_purity_0.95`."""
        return f"select_{self.species}_{self.kind}_{self.target:g}"


def _weights(weights, n):
    return np.ones(n) if weights is None else np.asarray(weights, np.float64)


def _cumulative(scores, is_species, weights=None):
    """Selections `score >= s_k` for every distinct score s_k, best first: (thresholds, tp, selected),
    counts weighted by `weights` (default 1 per track)."""
    scores, is_species = np.asarray(scores, np.float64), np.asarray(is_species, bool)
    w = _weights(weights, len(scores))
    order = np.argsort(-scores, kind="stable")
    s, hit, w = scores[order], is_species[order], w[order]
    tp, selected = np.cumsum(w * hit), np.cumsum(w)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a threshold selects a whole group of equal scores
    return s[last_of_tie], tp[last_of_tie], selected[last_of_tie]


def efficiency_purity_curve(scores, is_species, weights=None) -> dict:
    """Efficiency and purity of `score >= t` for every distinct threshold t (descending).

    `weights` (one per track) count tracks unequally: `π'_y / π_y` measures the selection in a
    sample with abundances π' instead of the one at hand.
    """
    thresholds, tp, selected = _cumulative(scores, is_species, weights)
    is_species = np.asarray(is_species, bool)
    n_true = max(float(np.sum(_weights(weights, len(is_species)) * is_species)), 1e-300)
    return {"threshold": thresholds, "efficiency": tp / n_true, "purity": tp / selected}


def choose_threshold(scores, is_species, point: WorkingPoint, weights=None) -> dict:
    """The threshold meeting `point` on (`scores`, `is_species`), and the efficiency and purity it gives.

    For a purity target, the lowest threshold whose selection has at least that purity (the
    highest efficiency); for an efficiency target, the highest threshold reaching it. When
    no threshold meets the target, `reached` is False and the threshold is +inf (selects nothing).
    """
    curve = efficiency_purity_curve(scores, is_species, weights)
    value = curve[point.kind]
    ok = np.flatnonzero(value >= point.target)
    if len(ok) == 0:
        return {"threshold": float("inf"), "reached": False, "efficiency": 0.0, "purity": None}
    k = ok[-1] if point.kind == "purity" else ok[0]
    return {"threshold": float(curve["threshold"][k]), "reached": True, "efficiency": float(curve["efficiency"][k]),
            "purity": float(curve["purity"][k])}


def efficiency_at_purity(scores, is_species, purity: float) -> float | None:
    """The highest efficiency of any threshold with at least `purity` (None: unreachable)."""
    return _best_efficiency(efficiency_purity_curve(scores, is_species), purity)


def _best_efficiency(curve: dict, purity: float) -> float | None:
    ok = curve["purity"] >= purity
    return float(curve["efficiency"][ok].max()) if ok.any() else None


def selection_performance(selected, is_species, momentum=None, bins=DEFAULT_MOMENTUM_BINS, weights=None) -> dict:
    """Efficiency and purity of a boolean selection, overall and (with `momentum`) per momentum bin.

    Returns `{"efficiency", "purity", "selected", "n_true"}` (track counts) and, per bin, lists of the
    same under `"per_bin"` (None where a bin has no true or no selected track). `weights` as in
    `efficiency_purity_curve`.
    """
    selected, is_species = np.asarray(selected, bool), np.asarray(is_species, bool)
    w = _weights(weights, len(selected))

    def perf(sel, true):
        tp, n_true, n_sel = np.sum(w * (sel & true)), np.sum(w * true), np.sum(w * sel)
        out = {"efficiency": float(tp / n_true) if true.any() else None,
               "purity": float(tp / n_sel) if sel.any() else None, "selected": int(sel.sum()),
               "n_true": int(true.sum())}
        if weights is None:  # track counts: Clopper–Pearson (a re-weighted sample has no binomial interval)
            passed = int(np.sum(sel & true))
            out["efficiency_interval"] = list(clopper_pearson(passed, out["n_true"]))
            out["purity_interval"] = list(clopper_pearson(passed, out["selected"]))
        return out

    out = perf(selected, is_species)
    if momentum is not None:
        edges = np.asarray(bins, np.float64)
        which = np.digitize(np.asarray(momentum), edges) - 1
        per = [perf(selected & (which == b), is_species & (which == b)) for b in range(len(edges) - 1)]
        out["per_bin"] = {"bins": edges.tolist(), **{k: [p[k] for p in per] for k in per[0]}}
    return out


def evaluate_working_point(point: WorkingPoint, val_probs, val_labels, test_probs, test_labels,
                           test_momentum=None, bins=DEFAULT_MOMENTUM_BINS, *, abundance_ratio=None) -> dict:
    """Threshold chosen on validation posteriors, performance measured on the test split.

    **Arguments:**

    - `point`: the target.
    - `val_probs`, `val_labels`: posteriors and truth of the validation split (chooses the threshold);
      a label -1 is a track of another species, which counts against purity.
    - `test_probs`, `test_labels`, `test_momentum`: the test split (measures it, per momentum bin).
    - `abundance_ratio`: π'_c / π_c per species when the posteriors are re-weighted to other
      abundances π': tracks are weighted so that purity and efficiency are those of such a sample.
    """
    c = point.index
    val_labels, test_labels = np.asarray(val_labels), np.asarray(test_labels)
    ratio = None if abundance_ratio is None else np.asarray(abundance_ratio, np.float64)
    chosen = choose_threshold(np.asarray(val_probs)[:, c], val_labels == c, point, _track_weights(ratio, val_labels))
    selected = np.asarray(test_probs)[:, c] >= chosen["threshold"]
    return {"working_point": point.name, "column": point.column, "threshold": chosen["threshold"],
            "reached_on_validation": chosen["reached"],
            "validation": {"efficiency": chosen["efficiency"], "purity": chosen["purity"]},
            "test": selection_performance(selected, test_labels == c, test_momentum, bins,
                                          _track_weights(ratio, test_labels))}


def _track_weights(ratio, labels):
    """π'_y / π_y per track; 1 for a track of another species (label -1), whose abundance is not re-weighted."""
    return None if ratio is None else np.where(labels >= 0, ratio[np.maximum(labels, 0)], 1.0)


def standard_working_points(labels, methods: dict[str, np.ndarray], purities=STANDARD_PURITIES) -> dict:
    """Per method and species, the best efficiency at each purity in `purities` (on one sample)."""
    labels = np.asarray(labels)
    out = {}
    for m, probs in methods.items():
        curves = {s: efficiency_purity_curve(probs[:, c], labels == c) for c, s in enumerate(CLASS_NAMES)}
        out[m] = {s: {f"{p:g}": _best_efficiency(curve, p) for p in purities} for s, curve in curves.items()}
    return out


__all__ = ["STANDARD_PURITIES", "WorkingPoint", "efficiency_purity_curve", "choose_threshold", "efficiency_at_purity",
           "selection_performance", "evaluate_working_point", "standard_working_points"]
