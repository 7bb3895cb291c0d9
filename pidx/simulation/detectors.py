"""Responses of the ITS, TRD, EMCal and HMPID for the O2-layout simulator: draws and exact log-densities.

Each function that draws an observable has a twin that evaluates its log-density per
species (arrays `[N, 4]`), so the oracle uses exactly the density the generator sampled
from. Sources and values are in docs/data.md ("The new detector groups").
"""

from __future__ import annotations

import numpy as np
from scipy import special

from . import physics

ITS_MAX_CLUSTER_SIZE = 15  # a 4-bit nibble per layer
HMPID_MAX_ANGLE = 0.75  # rad: the ring-angle window; background angles are uniform in it


def dedx_ratio(p, masses) -> np.ndarray:
    """Mean energy loss relative to a minimum-ionising particle (ALEPH shape), `[N, 4]`."""
    return physics.tpc_expected_signal(np.asarray(p)[:, None], np.asarray(masses)) / physics.TPC_MIP


# ----------------------------------------------------------------------------- ITS cluster size
def its_cluster_mean(p, eta, masses, size_mip: float) -> np.ndarray:
    """λ of the cluster size (1 + Poisson(λ)) per species: grows with dE/dx and path length (cosh η)."""
    return size_mip * dedx_ratio(p, masses) * np.cosh(np.asarray(eta))[:, None]


def its_draw_sizes(rng, lam: np.ndarray, hit_efficiency: float) -> np.ndarray:
    """Cluster size per layer `[N, 7]` (0 = no hit), for the true species' λ `[N]`."""
    n = len(lam)
    hits = rng.random((n, 7)) < hit_efficiency
    sizes = np.minimum(1 + rng.poisson(lam[:, None], (n, 7)), ITS_MAX_CLUSTER_SIZE)
    return np.where(hits, sizes, 0)


def its_pack(sizes: np.ndarray) -> np.ndarray:
    """`itsClusterSizes`: 7 layers × 4 bits, layer 0 in the lowest nibble."""
    packed = np.zeros(len(sizes), np.int64)
    for layer in range(7):
        packed |= sizes[:, layer].astype(np.int64) << (4 * layer)
    return packed.astype(np.int32)


def its_log_likelihood(sizes: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Σ over hit layers of log P(size | λ_species), `[N, 4]` (hit pattern: species-independent)."""
    out = np.zeros(lam.shape)
    for layer in range(7):
        k = sizes[:, layer][:, None].astype(np.float64)
        hit = k > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            body = (k - 1) * np.log(lam) - lam - special.gammaln(k)  # Poisson(k − 1; λ)
            tail = np.log(special.gammainc(ITS_MAX_CLUSTER_SIZE - 1, lam))  # P(1 + X ≥ 15)
        term = np.where(k >= ITS_MAX_CLUSTER_SIZE, tail, body)
        out += np.where(hit, term, 0.0)
    return out


# ----------------------------------------------------------------------------- TRD
def trd_efficiency(pt, eta, plateau: float) -> np.ndarray:
    """TRD tracklet matching: 0 below pT 0.25 GeV/c and outside |η| < 0.84 (species-independent)."""
    pt, eta = np.asarray(pt), np.asarray(eta)
    return np.where(np.abs(eta) < 0.84, plateau * (1.0 - np.exp(-np.maximum(pt - 0.25, 0.0) / 0.3)), 0.0)


def trd_mean_signal(p, masses, tr_strength: float, tr_onset_gamma: float) -> np.ndarray:
    """Mean TRD signal per species (arbitrary units, MIP = 100): dE/dx plus transition radiation at γ ≳ 10³."""
    masses = np.asarray(masses)
    gamma = np.sqrt(1.0 + (np.asarray(p)[:, None] / masses) ** 2)
    tr = tr_strength * gamma**2 / (gamma**2 + tr_onset_gamma**2)
    return 100.0 * dedx_ratio(p, masses) * (1.0 + tr)


def trd_log_likelihood(signal, mean, resolution: float) -> np.ndarray:
    """Log-normal density of the TRD signal per species, `[N, 4]`."""
    s = np.asarray(signal)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return physics.log_normal_pdf(np.log(s), np.log(mean), resolution) - np.log(s)


# ----------------------------------------------------------------------------- EMCal
def emcal_acceptance(pt, eta, phi) -> np.ndarray:
    """Tracks that reach the EMCal surface: |η| < 0.7, 80° < φ < 187°, pT > 0.5 GeV/c."""
    phi = np.mod(np.asarray(phi), 2 * np.pi)
    return (np.abs(eta) < 0.7) & (phi > np.radians(80)) & (phi < np.radians(187)) & (np.asarray(pt) > 0.5)


# ----------------------------------------------------------------------------- HMPID
def hmpid_acceptance(p, eta, phi) -> np.ndarray:
    """HMPID modules: |η| < 0.5 and 1° < φ < 59°, p > 0.5 GeV/c (matching efficiency applies on top)."""
    phi = np.mod(np.asarray(phi), 2 * np.pi)
    return (np.abs(eta) < 0.5) & (phi > np.radians(1)) & (phi < np.radians(59)) & (np.asarray(p) > 0.5)


def cherenkov_angle(p, masses, index: float) -> np.ndarray:
    """θ_c = acos(1/(nβ)) per species, NaN below threshold (nβ ≤ 1), `[N, 4]`."""
    masses = np.asarray(masses)
    p2 = np.asarray(p)[:, None]
    beta = p2 / np.sqrt(p2 * p2 + masses**2)
    with np.errstate(invalid="ignore"):
        return np.where(index * beta > 1.0, np.arccos(1.0 / (index * beta)), np.nan)


def hmpid_photon_mean(theta, index: float, photons_max: float, background: float) -> np.ndarray:
    """Mean photons on the ring: Frank–Tamm sin²θ scaled to `photons_max` at β = 1, plus background."""
    sin2_max = 1.0 - 1.0 / index**2
    ring = np.where(np.isfinite(theta), photons_max * np.sin(np.nan_to_num(theta)) ** 2 / sin2_max, 0.0)
    return ring + background


def hmpid_draw(rng, theta: np.ndarray, mu: np.ndarray, single_resolution: float, background_fraction: float):
    """(photons, ring angle) for the true species' θ `[N]` (NaN below threshold) and photon mean `[N]`."""
    n = len(theta)
    photons = rng.poisson(mu)
    sigma = single_resolution / np.sqrt(np.maximum(photons, 1))
    background = ~np.isfinite(theta) | (rng.random(n) < background_fraction)
    angle = np.where(background, rng.uniform(0.0, HMPID_MAX_ANGLE, n),
                     np.nan_to_num(theta) + sigma * rng.standard_normal(n))
    return photons, angle


def hmpid_log_likelihood(photons, angle, theta, mu, single_resolution: float, background_fraction: float):
    """log P(photons, angle | species), `[N, 4]`: Poisson photons, Gaussian ring or uniform background."""
    k = np.asarray(photons, np.float64)[:, None]
    a = np.asarray(angle, np.float64)[:, None]
    log_photons = k * np.log(mu) - mu - special.gammaln(k + 1)
    inside = (a >= 0) & (a <= HMPID_MAX_ANGLE)
    log_bkg = np.where(inside, -np.log(HMPID_MAX_ANGLE), -np.inf)
    sigma = single_resolution / np.sqrt(np.maximum(k, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ring = np.log1p(-background_fraction) + physics.log_normal_pdf(a, np.nan_to_num(theta), sigma)
        mixed = np.logaddexp(ring, np.log(background_fraction) + log_bkg)
    return log_photons + np.where(np.isfinite(theta), mixed, log_bkg)


__all__ = ["ITS_MAX_CLUSTER_SIZE", "HMPID_MAX_ANGLE", "dedx_ratio", "its_cluster_mean", "its_draw_sizes", "its_pack",
           "its_log_likelihood", "trd_efficiency", "trd_mean_signal", "trd_log_likelihood", "emcal_acceptance",
           "hmpid_acceptance", "cherenkov_angle", "hmpid_photon_mean", "hmpid_draw", "hmpid_log_likelihood"]
