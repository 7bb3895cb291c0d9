"""Detector response functions shared by the simulator and the classic baselines.

Units: GeV/c for momenta, GeV/c^2 for masses, metres for lengths, nanoseconds for
times, centimetres for DCA. Values follow ../shared/PHYSICS.md (O2Physics defaults).
"""

from __future__ import annotations

import numpy as np

C_M_PER_NS = 0.299792458  # speed of light

# ALEPH parameterisation, O2Physics Common/Core/PID/TPCPIDResponse.h defaults.
ALEPH_PARAMS = (0.03209810, 19.9768, 2.52666e-16, 2.72123, 6.08092)
TPC_MIP = 50.0


def beta_gamma(p, mass):
    return np.asarray(p) / mass


def aleph_bethe_bloch(bg, params=ALEPH_PARAMS):
    """ALEPH f(βγ): P1/β^P4 · (P2 − β^P4 − ln(P3 + 1/(βγ)^P5))."""
    p1, p2, p3, p4, p5 = params
    bg = np.asarray(bg, dtype=np.float64)
    beta = bg / np.sqrt(1.0 + bg * bg)
    bp = beta**p4
    return p1 / bp * (p2 - bp - np.log(p3 + bg ** (-p5)))


def tpc_expected_signal(p, mass, *, mip=TPC_MIP, params=ALEPH_PARAMS, charge=1.0):
    """Expected TPC dE/dx (arbitrary units, MIP = `mip`) at total momentum `p`."""
    return mip * aleph_bethe_bloch(beta_gamma(p, mass), params) * charge**2.3


def tof_track_length(pt, eta, *, radius_m=3.8, field_t=0.5):
    """Helix length from the vertex to the TOF cylinder, NaN where pT is too low.

    L = 2 R_c asin(R / 2R_c) · cosh η with R_c[m] = pT / (0.3 B).
    """
    pt = np.asarray(pt, dtype=np.float64)
    rc = pt / (0.299792458 * field_t)
    arg = radius_m / (2.0 * rc)
    with np.errstate(invalid="ignore"):
        length = np.where(arg <= 1.0, 2.0 * rc * np.arcsin(np.minimum(arg, 1.0)), np.nan)
    return length * np.cosh(eta)


def tof_min_pt(radius_m=3.8, field_t=0.5):
    """pT below which a track curls up before reaching the TOF radius."""
    return 0.299792458 * field_t * radius_m / 2.0


def tof_expected_time(p, length_m, mass):
    """Expected time of flight in ns: t = L √(m² + p²) / (c p)."""
    p = np.asarray(p, dtype=np.float64)
    return length_m * np.sqrt(mass * mass + p * p) / (C_M_PER_NS * p)


def dca_resolution_cm(p, beta, *, const_um=5.0, ms_um=28.0):
    """Primary-track DCA resolution σ = √(a² + (b/(pβ))²) µm, returned in cm."""
    return np.sqrt(const_um**2 + (ms_um / (np.asarray(p) * beta)) ** 2) * 1e-4


def log_normal_pdf(x, mean, sigma):
    z = (x - mean) / sigma
    return -0.5 * z * z - np.log(sigma) - 0.5 * np.log(2.0 * np.pi)


def log_laplace_pdf(x, scale):
    return -np.abs(x) / scale - np.log(2.0 * scale)


__all__ = [
    "C_M_PER_NS", "ALEPH_PARAMS", "TPC_MIP", "beta_gamma", "aleph_bethe_bloch",
    "tpc_expected_signal", "tof_track_length", "tof_min_pt", "tof_expected_time",
    "dca_resolution_cm", "log_normal_pdf", "log_laplace_pdf",
]
