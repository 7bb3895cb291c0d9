"""The O2-layout generator: every branch of `pid_features`, O2's missing-value conventions, MC truth,
and the exact oracle over everything the file records.

Physics on top of the legacy generator (TPC, TOF, DCA): centrality-dependent TPC resolution
and TOF mismatch, TPC clusters and the resolution they give, ITS cluster sizes, TRD signal
with transition radiation, EMCal matching, HMPID Cherenkov rings, the event vertex. Every
observable whose distribution depends on the species enters the oracle through the density
it was drawn from; the others (vz, χ², TRD pattern, EMCal position, HMPID charge/cluster
size/momentum, hit patterns) are drawn independently of the species and cancel in it.
"""

from __future__ import annotations

import math

import numpy as np

from . import detectors as det
from . import physics
from ..data.layouts import O2_BRANCHES
from ..data.schema import CLASS_PDG, MASSES_GEV, ORACLE_COLUMNS, VECTOR_ORACLE_COLUMNS
from .common import draw_mix_normal, expected_signals, log_mix_normal, sample_kinematics, tof_efficiency

EMCAL_RADIUS_M = 4.4
_SENTINEL = np.float32(-999.0)


def simulate_o2_chunk(cfg, table, rng: np.random.Generator, n: int, believed=None):
    """`n` tracks as `pid_features` branches (dict of arrays) and generator truth; with `believed`
    (a `(config, SpectrumTable)` that differs from `cfg` in the detector response and abundances
    only), the truth also holds `believed_vector_oracle`: the vector oracle of the believed physics."""
    masses = np.asarray(MASSES_GEV)
    rows = np.arange(n)
    species, pt, eta, phi, charge = sample_kinematics(cfg, table, rng, n)
    p = pt * np.cosh(eta)
    centrality = rng.uniform(0.0, 100.0, n)
    occupancy = 1.0 - centrality / 100.0  # 1 in the most central events
    vz = rng.normal(0.0, 6.0, n)
    length = physics.tof_track_length(pt, eta, radius_m=cfg.tof_radius_m, field_t=cfg.field_t)
    dedx_exp, t_exp, sigma_dca = expected_signals(cfg, p, length)

    # TPC: resolution from clusters and centrality, with a wide tail
    has_tpc = rng.random(n) < cfg.tpc_efficiency
    ncls = np.clip(np.round(rng.normal(cfg.tpc_clusters_mean, cfg.tpc_clusters_sigma, n)), 60, 159).astype(np.int32)
    res_scale = np.sqrt(cfg.tpc_clusters_mean / ncls) * (1.0 + cfg.centrality_resolution_slope * occupancy)
    tpc_sigma = np.asarray(cfg.tpc_resolution)[None, :] * res_scale[:, None] * dedx_exp
    # the response may differ from the calibration the n-sigma assume (a data scenario): shift and width
    signal = dedx_exp[rows, species] + tpc_sigma[rows, species] * (cfg.tpc_nsigma_shift + cfg.tpc_nsigma_width
                                                                   * draw_mix_normal(rng, n, cfg.tpc_tail_fraction,
                                                                                     cfg.tpc_tail_scale))
    tpc_chi2 = rng.gamma(8.0, 1.0 / 8.0, n)

    # TOF: matching, resolution with tail, centrality-dependent mismatches
    eff_tof = tof_efficiency(cfg, pt)
    has_tof = (rng.random(n) < eff_tof[rows, species]) & np.isfinite(length)
    f_mis = tof_mismatch_fraction(cfg, occupancy)
    mismatch = rng.random(n) < f_mis
    lo, hi = cfg.tof_mismatch_window_ns
    t_light = length / physics.C_M_PER_NS
    t_true = t_exp[rows, species] + cfg.tof_time_offset_ns + cfg.tof_resolution_ns * cfg.tof_nsigma_width * \
        draw_mix_normal(rng, n, cfg.tof_tail_fraction, cfg.tof_tail_scale)
    t_meas = np.where(mismatch, t_light + rng.uniform(lo, hi, n), t_true)

    # DCA: primaries Gaussian, secondaries Laplace
    secondary = rng.random(n) < np.asarray(cfg.secondary_fraction)[species]
    sec_scale = np.asarray(cfg.secondary_dca_scale_cm)[species]
    dca = np.where(secondary[:, None], rng.laplace(0.0, sec_scale[:, None], (n, 2)),
                   rng.standard_normal((n, 2)) * sigma_dca[rows, species][:, None])

    # ITS, TRD, EMCal, HMPID
    lam = det.its_cluster_mean(p, eta, masses, cfg.its_cluster_size_mip)
    its_sizes = det.its_draw_sizes(rng, lam[rows, species], cfg.its_hit_efficiency)
    its_chi2 = rng.gamma(4.0, 0.25, n)
    has_trd = rng.random(n) < det.trd_efficiency(pt, eta, cfg.trd_plateau)
    trd_mean = det.trd_mean_signal(p, masses, cfg.trd_tr_strength, cfg.trd_tr_onset_gamma)
    trd_signal = trd_mean[rows, species] * np.exp(cfg.trd_resolution * rng.standard_normal(n))
    trd_chi2 = rng.gamma(2.0, 0.5, n)
    trd_pattern = (rng.random((n, 6)) < 0.85) @ (1 << np.arange(6))
    trd_pattern = np.where(trd_pattern == 0, 1, trd_pattern)
    emcal_in = det.emcal_acceptance(pt, eta, phi)
    emcal_eff = np.asarray(cfg.emcal_match_efficiency)
    has_emcal = emcal_in & (rng.random(n) < emcal_eff[species])
    bend = np.arcsin(np.minimum(0.299792458 * cfg.field_t * EMCAL_RADIUS_M / (2.0 * pt), 1.0))
    eta_emcal = eta + 0.01 * rng.standard_normal(n)
    phi_emcal = np.mod(phi - charge * bend + 0.01 * rng.standard_normal(n), 2 * math.pi)
    has_hmpid = det.hmpid_acceptance(p, eta, phi) & (rng.random(n) < cfg.hmpid_efficiency)
    theta = det.cherenkov_angle(p, masses, cfg.hmpid_index)
    mu = det.hmpid_photon_mean(theta, cfg.hmpid_index, cfg.hmpid_photons_max, cfg.hmpid_background_photons)
    photons, angle = det.hmpid_draw(rng, theta[rows, species], mu[rows, species], cfg.hmpid_angle_resolution,
                                    cfg.hmpid_background_fraction)
    hmpid_qmip = rng.gamma(4.0, 400.0, n)
    hmpid_clus = 1 + rng.poisson(3.0, n)
    hmpid_mom = p * (1.0 - 0.01 * np.abs(rng.standard_normal(n)))

    with np.errstate(invalid="ignore", divide="ignore"):
        tpc_nsigma = (signal[:, None] - dedx_exp) / tpc_sigma
        tof_nsigma = (t_meas[:, None] - t_exp) / cfg.tof_resolution_ns
        beta = length / (physics.C_M_PER_NS * t_meas)
        m2 = p * p * (1.0 / (beta * beta) - 1.0)
        tof_mass = np.sign(m2) * np.sqrt(np.abs(m2))  # negative where β > 1 (mismatches, resolution)

    obs = dict(pt=pt, eta=eta, phi=phi, p=p, centrality=centrality, f_mis=f_mis, has_tpc=has_tpc, signal=signal,
               tpc_sigma=tpc_sigma, has_tof=has_tof, t_meas=t_meas, length=length, dca=dca, lam=lam,
               its_sizes=its_sizes, has_trd=has_trd, trd_signal=trd_signal, trd_mean=trd_mean, emcal_in=emcal_in,
               has_emcal=has_emcal, has_hmpid=has_hmpid, photons=photons, angle=angle, theta=theta, mu=mu)
    oracle, vector_oracle = _oracle(cfg, table, obs, dedx_exp, t_exp, sigma_dca)
    bayes = _bayes_o2(tpc_nsigma, tof_nsigma, has_tpc, has_tof)

    def absent(values, present, fill):
        return np.where(present, values, fill)

    cols = {
        "p": p, "pt": pt, "px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "eta": eta,
        "phi": phi, "sign": charge, "trackType": np.zeros(n), "vz": vz, "centFT0C": centrality,
        "dcaXY": dca[:, 0], "dcaZ": dca[:, 1],
        "hasTPC": has_tpc, "tpcSignal": absent(signal, has_tpc, 0.0),
        "tpcNClsFound": absent(ncls, has_tpc, 0), "tpcChi2NCl": absent(tpc_chi2, has_tpc, 0.0),
        "hasTOF": has_tof, "tofMass": absent(tof_mass, has_tof, np.nan), "beta": absent(beta, has_tof, _SENTINEL),
        "hasTRD": has_trd, "trdSignal": absent(trd_signal, has_trd, 0.0), "trdChi2": absent(trd_chi2, has_trd, _SENTINEL),
        "trdPattern": absent(trd_pattern, has_trd, 0),
        "itsClusterSizes": det.its_pack(its_sizes), "itsChi2NCl": its_chi2,
        "hasEMCal": has_emcal, "trackEtaEmcal": absent(eta_emcal, has_emcal, _SENTINEL),
        "trackPhiEmcal": absent(phi_emcal, has_emcal, _SENTINEL),
        "hasHMPID": has_hmpid, "hmpidSignal": absent(angle, has_hmpid, np.nan),
        "hmpidQMip": absent(hmpid_qmip, has_hmpid, np.nan), "hmpidNPhotons": absent(photons, has_hmpid, 0),
        "hmpidClusSize": absent(hmpid_clus, has_hmpid, 0), "hmpidMom": absent(hmpid_mom, has_hmpid, np.nan),
    }
    for i, name in enumerate(("Pi", "Ka", "Pr", "El")):
        cols[f"tpcNSigma{name}"] = absent(tpc_nsigma[:, i], has_tpc, _SENTINEL)
        cols[f"tofNSigma{name}"] = absent(tof_nsigma[:, i], has_tof, _SENTINEL)
        cols[f"bayesProb{name}"] = bayes[:, i]
    types = {"float": np.float32, "int": np.int32, "bool": np.bool_}
    out = {b: np.asarray(cols[b]).astype(types[t]) for b, t in O2_BRANCHES.items()}
    out["mcPdg"] = (charge * np.asarray(CLASS_PDG)[species]).astype(np.int32)
    out["mcIsPhysicalPrimary"] = (~secondary).astype(np.uint8)
    for i, col in enumerate(ORACLE_COLUMNS):
        out[col] = oracle[:, i].astype(np.float32)
    for i, col in enumerate(VECTOR_ORACLE_COLUMNS):
        out[col] = vector_oracle[:, i].astype(np.float32)
    truth = {"secondary": secondary, "tof_mismatch": mismatch & has_tof, "its_sizes": its_sizes}
    if believed is not None:  # the same tracks seen through another response (e.g. MC's, on data)
        truth["believed_vector_oracle"] = _oracle(*believed, obs, dedx_exp, t_exp, sigma_dca)[1].astype(np.float32)
    return out, truth


def _bayes_o2(tpc_nsigma, tof_nsigma, has_tpc, has_tof):
    """`computeBayesianProbs` of the O2 extractor: flat priors, Gaussian TPC (+ TOF) likelihoods in
    float32, 0.25 each when the sum underflows, NaN without TPC."""
    ns_tpc = np.nan_to_num(tpc_nsigma).astype(np.float32)
    ns_tof = np.nan_to_num(tof_nsigma).astype(np.float32)
    with np.errstate(over="ignore", under="ignore"):
        log_l = np.float32(-0.5) * ns_tpc * ns_tpc + np.where(has_tof[:, None], np.float32(-0.5) * ns_tof * ns_tof,
                                                            np.float32(0.0))
        prob = np.exp(log_l.astype(np.float32))
        total = prob.sum(axis=1, keepdims=True, dtype=np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            prob = np.where(total > 0, prob / total, np.float32(0.25))
    return np.where(has_tpc[:, None], prob, np.nan)


def _oracle(cfg, table, o, dedx_exp, t_exp, sigma_dca) -> tuple[np.ndarray, np.ndarray]:
    """Exact posteriors from the generator's own densities: `(oracle, vector_oracle)`.

    - `oracle`: P(species | every branch of the file).
    - `vector_oracle`: P(species | what the 46-value vector of `pid-onnx-inference` carries). The
      vector keeps the ITS hit count but not the per-layer cluster sizes; the hit pattern is
      species-independent, so their likelihood integrates out to 1 and the ITS term drops. It
      has no centrality either: with TPC, centrality is a function of the vector (the TPC
      n-sigma over the signal gives the resolution, the cluster count and momentum its
      centrality factor), so the oracle's term stands; without TPC only the TOF mismatch
      fraction depends on it, linearly, so the centrality-uniform average of f_mis is exact.
    """
    base = _log_terms_without_its_and_tof(cfg, table, o, dedx_exp, sigma_dca)
    with np.errstate(divide="ignore", invalid="ignore"):
        its = det.its_log_likelihood(o["its_sizes"], o["lam"])
    tof = _tof_log_likelihood(cfg, o, t_exp)
    f_mis_vector = np.where(o["has_tpc"], o["f_mis"], mean_tof_mismatch_fraction(cfg))
    return _normalise(base + its + tof(o["f_mis"])), _normalise(base + tof(f_mis_vector))


def tof_mismatch_fraction(cfg, occupancy) -> np.ndarray:
    """Fraction of TOF matches that are mismatches: f·(1 − k/2 + k·occupancy), occupancy = 1 − c/100."""
    k = cfg.tof_mismatch_centrality
    return cfg.tof_mismatch_fraction * (1.0 - k / 2.0 + k * np.asarray(occupancy))


def mean_tof_mismatch_fraction(cfg) -> float:
    """`tof_mismatch_fraction` averaged over the uniform centrality (linear in it): f."""
    return float(cfg.tof_mismatch_fraction)


def _tof_log_likelihood(cfg, o, t_exp):
    """log P(TOF match and time | species), or log P(no match), `[N, 4]`, as a function of the
    mismatch fraction per track `[N]`; the densities that do not depend on it are computed once."""
    lo, hi = cfg.tof_mismatch_window_ns
    with np.errstate(divide="ignore", invalid="ignore"):
        eff_tof = tof_efficiency(cfg, o["pt"])
        log_eff, log_ineff = np.log(eff_tof), np.log1p(-eff_tof)
        delta = (o["t_meas"] - o["length"] / physics.C_M_PER_NS)[:, None]
        in_window = (delta >= lo) & (delta <= hi)
        core_density = log_mix_normal(o["t_meas"][:, None], t_exp + cfg.tof_time_offset_ns,
                                      cfg.tof_resolution_ns * cfg.tof_nsigma_width, cfg.tof_tail_fraction,
                                      cfg.tof_tail_scale)

    def at(f_mis) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            f_mis = np.asarray(f_mis)[:, None]
            log_mis = np.where(in_window, np.log(f_mis) - np.log(hi - lo), -np.inf)
            tof_ll = np.logaddexp(np.log1p(-f_mis) + core_density, log_mis)
            return np.where(o["has_tof"][:, None], log_eff + np.nan_to_num(tof_ll, nan=-np.inf), log_ineff)
    return at


def _log_terms_without_its_and_tof(cfg, table, o, dedx_exp, sigma_dca) -> np.ndarray:
    fractions = np.asarray(cfg.species_fractions, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(fractions / fractions.sum())[None, :] + table.log_density(o["pt"])
        tpc_ll = log_mix_normal(o["signal"][:, None], dedx_exp + cfg.tpc_nsigma_shift * o["tpc_sigma"],
                                o["tpc_sigma"] * cfg.tpc_nsigma_width, cfg.tpc_tail_fraction, cfg.tpc_tail_scale)
        logp += np.where(o["has_tpc"][:, None], tpc_ll, 0.0)  # TPC efficiency: species-independent
        f_sec = np.asarray(cfg.secondary_fraction)
        s_sec = np.asarray(cfg.secondary_dca_scale_cm)
        dca = o["dca"]
        prim = np.log1p(-f_sec) + sum(physics.log_normal_pdf(dca[:, j, None], 0.0, sigma_dca) for j in (0, 1))
        sec = np.log(f_sec) + sum(physics.log_laplace_pdf(dca[:, j, None], s_sec) for j in (0, 1))
        logp += np.logaddexp(prim, sec)
        logp += np.where(o["has_trd"][:, None],
                         det.trd_log_likelihood(o["trd_signal"], o["trd_mean"], cfg.trd_resolution), 0.0)
        eff_emcal = np.asarray(cfg.emcal_match_efficiency)[None, :]
        logp += np.where(o["emcal_in"][:, None],
                         np.where(o["has_emcal"][:, None], np.log(eff_emcal), np.log1p(-eff_emcal)), 0.0)
        hmpid_ll = det.hmpid_log_likelihood(o["photons"], o["angle"], o["theta"], o["mu"],
                                            cfg.hmpid_angle_resolution, cfg.hmpid_background_fraction)
        logp += np.where(o["has_hmpid"][:, None], hmpid_ll, 0.0)
    return logp


def _normalise(logp: np.ndarray) -> np.ndarray:
    logp = logp - logp.max(axis=1, keepdims=True)
    prob = np.exp(logp)
    return prob / prob.sum(axis=1, keepdims=True)


__all__ = ["simulate_o2_chunk", "tof_mismatch_fraction", "mean_tof_mismatch_fraction"]
