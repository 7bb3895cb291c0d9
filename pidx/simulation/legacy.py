"""The legacy-layout generator: the seed's 21 columns (TPC, TOF, DCA, Bayes) and the exact oracle."""

from __future__ import annotations

import numpy as np

from . import physics
from ..data.schema import BAYES_COLUMNS, CLASS_PDG, FEATURE_COLUMNS, LABEL_COLUMN, ORACLE_COLUMNS
from .common import draw_mix_normal as _draw_mix_normal
from .common import expected_signals as _expected
from .common import log_mix_normal as _log_mix_normal
from .common import sample_kinematics
from .common import tof_efficiency


def simulate_legacy_chunk(cfg, table, rng: np.random.Generator, n: int):
    species, pt, eta, phi, charge = sample_kinematics(cfg, table, rng, n)
    p = pt * np.cosh(eta)
    length = physics.tof_track_length(pt, eta, radius_m=cfg.tof_radius_m, field_t=cfg.field_t)
    dedx_exp, t_exp, sigma_dca = _expected(cfg, p, length)
    rows = np.arange(n)
    tpc_res = np.asarray(cfg.tpc_resolution)

    # TPC dE/dx: relative resolution with a wider-resolution tail population.
    has_tpc = rng.random(n) < cfg.tpc_efficiency
    mean = dedx_exp[rows, species]
    signal = mean * (1.0 + tpc_res[species] * (cfg.tpc_nsigma_shift + cfg.tpc_nsigma_width * _draw_mix_normal(
        rng, n, cfg.tpc_tail_fraction, cfg.tpc_tail_scale)))

    # TOF: matching efficiency, resolution with tail, mismatched hits.
    eff_tof = tof_efficiency(cfg, pt)
    has_tof = (rng.random(n) < eff_tof[rows, species]) & np.isfinite(length)
    mismatch = rng.random(n) < cfg.tof_mismatch_fraction
    t_light = length / physics.C_M_PER_NS
    lo, hi = cfg.tof_mismatch_window_ns
    t_true = t_exp[rows, species] + cfg.tof_time_offset_ns + cfg.tof_resolution_ns * cfg.tof_nsigma_width * \
        _draw_mix_normal(rng, n, cfg.tof_tail_fraction, cfg.tof_tail_scale)
    t_meas = np.where(mismatch, t_light + rng.uniform(lo, hi, n), t_true)

    # DCA: primary Gaussian core, secondaries with wide Laplace tails.
    secondary = rng.random(n) < np.asarray(cfg.secondary_fraction)[species]
    sec_scale = np.asarray(cfg.secondary_dca_scale_cm)[species]
    sig = sigma_dca[rows, species]
    dca = np.where(secondary[:, None], rng.laplace(0.0, sec_scale[:, None], (n, 2)),
                   rng.standard_normal((n, 2)) * sig[:, None])

    # Observed n-sigma for every hypothesis.
    with np.errstate(invalid="ignore", divide="ignore"):
        tpc_nsigma = (signal[:, None] - dedx_exp) / (tpc_res * dedx_exp)
        tof_nsigma = (t_meas[:, None] - t_exp) / cfg.tof_resolution_ns
        beta = length / (physics.C_M_PER_NS * t_meas)

    bayes = _bayes_pid(cfg, tpc_nsigma, tof_nsigma, has_tpc, has_tof)
    bayes[rng.random(n) < cfg.bayes_missing_fraction] = np.nan
    oracle = _oracle(cfg, table, pt, signal, t_meas, length, dca, has_tpc, has_tof,
                     dedx_exp, t_exp, sigma_dca)

    nan = np.float64(np.nan)
    cols = {
        "pt": pt, "eta": eta, "phi": phi, "dca_xy": dca[:, 0], "dca_z": dca[:, 1],
        "tpc_signal": np.where(has_tpc, signal, nan),
    }
    for i, name in enumerate(("pi", "ka", "pr", "el")):
        cols[f"tpc_nsigma_{name}"] = np.where(has_tpc, tpc_nsigma[:, i], nan)
    cols["tof_beta"] = np.where(has_tof, beta, nan)
    for i, name in enumerate(("pi", "ka", "pr", "el")):
        cols[f"tof_nsigma_{name}"] = np.where(has_tof, tof_nsigma[:, i], nan)
    for i, col in enumerate(BAYES_COLUMNS):
        cols[col] = bayes[:, i]
    out = {c: cols[c].astype(np.float32) for c in FEATURE_COLUMNS if c in cols}
    out["has_tpc"] = has_tpc.astype(np.int8)
    out["has_tof"] = has_tof.astype(np.int8)
    out[LABEL_COLUMN] = (charge * np.asarray(CLASS_PDG)[species]).astype(np.int32)
    for i, col in enumerate(ORACLE_COLUMNS):
        out[col] = oracle[:, i].astype(np.float32)
    truth = {"secondary": secondary, "tof_mismatch": mismatch & has_tof}
    return out, truth


def _bayes_pid(cfg, tpc_nsigma, tof_nsigma, has_tpc, has_tof):
    """ALICE Bayesian PID: priors × Gaussian likelihoods of the available detectors."""
    log_l = np.log(np.asarray(cfg.bayes_priors, dtype=np.float64))[None, :].repeat(len(has_tpc), 0)
    cut = cfg.bayes_tpc_cut
    tpc_term = -0.5 * np.minimum(np.nan_to_num(tpc_nsigma, nan=cut), cut) ** 2
    log_l = log_l + np.where(has_tpc[:, None], tpc_term, 0.0)
    k = cfg.bayes_tof_tail
    a = np.abs(np.nan_to_num(tof_nsigma, nan=0.0))
    tof_term = np.where(a < k, -0.5 * a * a, 0.5 * k * k - k * a)
    log_l = log_l + np.where(has_tof[:, None], tof_term, 0.0)
    log_l -= log_l.max(axis=1, keepdims=True)
    prob = np.exp(log_l)
    prob /= prob.sum(axis=1, keepdims=True)
    prob[~(has_tpc | has_tof)] = np.nan
    return prob


def _oracle(cfg, table, pt, signal, t_meas, length, dca, has_tpc, has_tof, dedx_exp, t_exp, sigma_dca):
    """Exact log P(species | observed) from the generator's own densities."""
    fractions = np.asarray(cfg.species_fractions, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logp = np.log(fractions / fractions.sum())[None, :] + table.log_density(pt)
    eff = cfg.tpc_efficiency
    tpc_res = np.asarray(cfg.tpc_resolution)
    sigma = tpc_res * dedx_exp
    tpc_ll = _log_mix_normal(signal[:, None], dedx_exp + cfg.tpc_nsigma_shift * sigma, sigma * cfg.tpc_nsigma_width,
                             cfg.tpc_tail_fraction, cfg.tpc_tail_scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp += np.where(has_tpc[:, None], np.log(eff) + tpc_ll, np.log1p(-eff))
        eff_tof = tof_efficiency(cfg, pt)
        lo, hi = cfg.tof_mismatch_window_ns
        delta = (t_meas - length / physics.C_M_PER_NS)[:, None]
        in_window = (delta >= lo) & (delta <= hi)
        log_mis = np.where(in_window, np.log(cfg.tof_mismatch_fraction) - np.log(hi - lo), -np.inf)
        core = np.log1p(-cfg.tof_mismatch_fraction) + _log_mix_normal(
            t_meas[:, None], t_exp + cfg.tof_time_offset_ns, cfg.tof_resolution_ns * cfg.tof_nsigma_width,
            cfg.tof_tail_fraction, cfg.tof_tail_scale)
        tof_ll = np.logaddexp(core, log_mis)
        logp += np.where(has_tof[:, None], np.log(eff_tof) + np.nan_to_num(tof_ll, nan=-np.inf),
                         np.log1p(-eff_tof))
        f_sec = np.asarray(cfg.secondary_fraction)
        s_sec = np.asarray(cfg.secondary_dca_scale_cm)
        prim = np.log1p(-f_sec) + sum(physics.log_normal_pdf(dca[:, j, None], 0.0, sigma_dca) for j in (0, 1))
        sec = np.log(f_sec) + sum(physics.log_laplace_pdf(dca[:, j, None], s_sec) for j in (0, 1))
        logp += np.logaddexp(prim, sec)
    logp -= logp.max(axis=1, keepdims=True)
    prob = np.exp(logp)
    return prob / prob.sum(axis=1, keepdims=True)




__all__ = ["simulate_legacy_chunk"]
