"""Densities both simulator layouts share: pT spectra, TOF matching, expected signals, mixtures.

Each is sampled and evaluated by the same code, which keeps the oracle exact.
"""

from __future__ import annotations

import math

import numpy as np

from . import physics
from ..data.schema import MASSES_GEV, NUM_CLASSES


# ----------------------------------------------------------------------------- spectra
class SpectrumTable:
    """Piecewise-constant pT density per species: sampled and evaluated identically."""

    def __init__(self, cfg, n_cells: int = 8192):
        self.edges = np.geomspace(cfg.pt_min, cfg.pt_max, n_cells + 1)
        mids = 0.5 * (self.edges[1:] + self.edges[:-1])
        widths = np.diff(self.edges)
        self.cum, self.density = [], []
        for c in range(NUM_CLASSES):
            m, t, n = MASSES_GEV[c], cfg.spectrum_temperature[c], cfg.spectrum_n[c]
            mt = np.sqrt(mids**2 + m * m)
            mass = mids * (1.0 + (mt - m) / (n * t)) ** (-n) * widths
            mass = mass / mass.sum()
            self.cum.append(np.concatenate([[0.0], np.cumsum(mass)]))
            self.density.append(mass / widths)

    def sample(self, rng: np.random.Generator, species: int, n: int) -> np.ndarray:
        u = rng.random(n)
        cum = self.cum[species]
        k = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(cum) - 2)
        frac = (u - cum[k]) / np.maximum(cum[k + 1] - cum[k], 1e-300)
        return self.edges[k] + np.clip(frac, 0.0, 1.0) * (self.edges[k + 1] - self.edges[k])

    def log_density(self, pt: np.ndarray) -> np.ndarray:
        """log dN/dpT of each species at `pt`, shape [N, 4]."""
        k = np.clip(np.searchsorted(self.edges, pt, side="right") - 1, 0, len(self.edges) - 2)
        with np.errstate(divide="ignore"):
            return np.stack([np.log(d[k]) for d in self.density], axis=-1)


# ----------------------------------------------------------------------------- responses
def tof_efficiency(cfg, pt: np.ndarray) -> np.ndarray:
    """TOF matching probability of each species, shape [N, 4]."""
    pt_on = physics.tof_min_pt(cfg.tof_radius_m, cfg.field_t)
    base = cfg.plateau * (1.0 - np.exp(-np.maximum(pt - pt_on, 0.0) / cfg.tof_turn_on_slope))
    kaon = np.interp(pt, cfg.tof_species_factor_pt, cfg.tof_kaon_factor)
    proton = np.interp(pt, cfg.tof_species_factor_pt, cfg.tof_proton_factor)
    return np.stack([base, base * kaon, base * proton, base], axis=-1)


def expected_signals(cfg, p, length):
    """Expected TPC signal, TOF time and DCA resolution per species, each [N, 4]."""
    masses = np.asarray(MASSES_GEV)
    p2 = p[:, None]
    dedx = physics.tpc_expected_signal(p2, masses)
    with np.errstate(invalid="ignore"):
        t_exp = physics.tof_expected_time(p2, length[:, None], masses)
    beta = p2 / np.sqrt(p2 * p2 + masses**2)
    sigma_dca = physics.dca_resolution_cm(p2, beta)
    return dedx, t_exp, sigma_dca


def log_mix_normal(x, mean, sigma, tail_fraction, tail_scale):
    # NaN expectations (no TOF hit possible) stay NaN; callers mask them out.
    with np.errstate(invalid="ignore"):
        core = np.log1p(-tail_fraction) + physics.log_normal_pdf(x, mean, sigma)
        if tail_fraction <= 0:
            return core
        tail = np.log(tail_fraction) + physics.log_normal_pdf(x, mean, sigma * tail_scale)
        return np.logaddexp(core, tail)


def draw_mix_normal(rng, n, tail_fraction, tail_scale):
    z = rng.standard_normal(n)
    return np.where(rng.random(n) < tail_fraction, z * tail_scale, z)




def sample_kinematics(cfg, table, rng, n):
    """(species, pT, η, φ, charge) of `n` tracks: species by fraction, pT from its spectrum table."""
    fractions = np.asarray(cfg.species_fractions, dtype=np.float64)
    species = rng.choice(NUM_CLASSES, size=n, p=fractions / fractions.sum())
    pt = np.empty(n)
    for c in range(NUM_CLASSES):
        sel = species == c
        pt[sel] = table.sample(rng, c, int(sel.sum()))
    eta = rng.uniform(-cfg.eta_max, cfg.eta_max, n)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    charge = np.where(rng.random(n) < 0.5, 1, -1)
    return species, pt, eta, phi, charge


__all__ = ["sample_kinematics", "SpectrumTable", "tof_efficiency", "expected_signals", "log_mix_normal", "draw_mix_normal"]
