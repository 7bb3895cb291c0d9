"""Species pidx does not classify (muons, nuclei, fake tracks): their names, counts, and their share of
the validation and test splits, where they stay as contamination."""

from __future__ import annotations

import numpy as np

from .table import TrackTable

# names of the species ALICE MC has besides π, K, p, e (|PDG code| → name)
SPECIES_NAMES = {0: "fake (PDG 0)", 13: "mu", 1000010020: "d", 1000010030: "t", 1000020030: "He3",
                 1000020040: "alpha", 3222: "Sigma+", 3112: "Sigma-", 3312: "Xi-", 3334: "Omega-"}


def species_name(code: int) -> str:
    """A short name for a PDG code of a species pidx does not classify (either sign)."""
    return SPECIES_NAMES.get(abs(int(code)), f"PDG {abs(int(code))}")


def species_counts(pdg) -> dict[str, int]:
    """Tracks per species name, most frequent first."""
    names, counts = np.unique([species_name(c) for c in np.asarray(pdg).tolist()], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {str(names[i]): int(counts[i]) for i in order}


def set_aside_other_species(table: TrackTable, *, seed: int, test_fraction: float, val_fraction: float):
    """(the π/K/p/e tracks, to split and train on; the other species' validation and test shares, kept as
    contamination; per split, the other species' tracks per species).

    Tracks of other species (label -1) are never trained on. A seeded share of them, in the split's
    proportions, goes to validation and test; the rest is counted as left out of training. The
    π/K/p/e tracks are untouched, so their split is the one a file without other species gets."""
    other = table.labels < 0
    if not other.any():
        return table, {}, {}
    rows = np.flatnonzero(other)
    share = np.random.default_rng([seed, 0x07E5]).random(len(rows))
    where = {"test": share < test_fraction,
             "val": (share >= test_fraction) & (share < test_fraction + val_fraction)}
    where["train"] = ~(where["test"] | where["val"])
    others = table.subset(rows)
    counts = {name: species_counts(others.pdg[sel]) if sel.any() else {} for name, sel in where.items()}
    contamination = {name: others.subset(np.flatnonzero(where[name])) for name in ("val", "test")
                     if where[name].any()}
    return table.subset(np.flatnonzero(~other)), contamination, counts


__all__ = ["SPECIES_NAMES", "species_name", "species_counts", "set_aside_other_species"]
