"""Physics-faithful ALICE track simulator with the exact Bayes-optimal posterior.

Real ALICE data cannot be downloaded here, so this is the embedded default dataset.
Each track is drawn from explicit densities (species spectra, TPC dE/dx with a
non-Gaussian tail, TOF time with mismatches, DCA with secondaries, detector
efficiencies), and the same densities give the *oracle*: P(species | everything
observed), the ceiling any classifier can reach on this data.

Every density the generator samples from is evaluated exactly by the oracle (the
pT spectra are sampled from a fine piecewise-constant table, and the oracle uses
that same table), so the oracle is exact, not an approximation.

Parameters and their sources are documented on `SimulatorConfig` and in
docs/data.md; the values are inside the ranges of ../shared/PHYSICS.md.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from ..errors import DataError
from . import physics
from .schema import (
    BAYES_COLUMNS, CLASS_PDG, FEATURE_COLUMNS, LABEL_COLUMN, MASSES_GEV, NUM_CLASSES, ORACLE_COLUMNS,
)

TOF_SCENARIOS = ("run3", "seed_scarce")
# TOF matching plateau of each scenario. `seed_scarce` reproduces the seed data's
# TOF on ~8.5 % of tracks at 0.7 < p < 1.5 GeV/c (an artefact of its extraction).
_TOF_PLATEAU = {"run3": 0.65, "seed_scarce": 0.10}


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """Parameters of the simulated Pb–Pb sample. Per-species tuples are (π, K, p, e).

    **Arguments:**

    - `n_tracks`, `seed`: sample size and RNG seed (same seed → same table).
    - `species_fractions`: class composition; default the seed dataset's 69/5/14/12 %.
    - `spectrum_temperature`, `spectrum_n`: Lévy–Tsallis dN/dpT ∝ pT (1 + (mT−m)/(nT))^−n.
    - `pt_min`, `pt_max`, `eta_max`: acceptance (|η| uniform below `eta_max`).
    - `tpc_efficiency`: probability that a track has a TPC measurement.
    - `tpc_resolution`: relative dE/dx resolution per species (hadrons 6.5 %, e 5.5 %).
    - `tpc_tail_fraction`, `tpc_tail_scale`: fraction of tracks whose dE/dx
      resolution is `tpc_tail_scale` times wider (non-Gaussian tail).
    - `tof_scenario`: `run3` (matching plateau 65 %) or `seed_scarce` (the seed's
      ~8.5 % TOF at 0.7–1.5 GeV/c); `tof_plateau` overrides the plateau directly.
    - `tof_turn_on_slope`: ε(pT) = plateau · (1 − exp(−(pT − pT_min^TOF)/slope)).
    - `tof_species_factor_pt`, `tof_kaon_factor`, `tof_proton_factor`: matching
      relative to pions at those pT (decays, absorption), interpolated.
    - `tof_radius_m`, `field_t`: TOF radius and solenoid field, giving track length.
    - `tof_resolution_ns`: total time resolution (intrinsic ⊕ event time).
    - `tof_tail_fraction`, `tof_tail_scale`: wider-resolution fraction, as for TPC.
    - `tof_mismatch_fraction`, `tof_mismatch_window_ns`: matched hits that belong
      to another particle; their time is uniform in this window around L/c.
    - `secondary_fraction`, `secondary_dca_scale_cm`: per-species fraction of
      secondaries (Λ→p, conversions→e) and the Laplace width of their DCA.
    - `bayes_priors`: priors C_i of the ALICE Bayesian PID (flat as in O2Physics).
    - `bayes_tpc_cut`: TPC likelihood flat beyond this many σ.
    - `bayes_tof_tail`: TOF likelihood turns exponential above this many σ.
    - `bayes_missing_fraction`: tracks whose Bayes output is missing at random.
    """

    n_tracks: int = 100_000
    seed: int = 231
    species_fractions: tuple[float, ...] = (0.69, 0.05, 0.14, 0.12)
    spectrum_temperature: tuple[float, ...] = (0.17, 0.21, 0.26, 0.12)
    spectrum_n: tuple[float, ...] = (7.0, 8.0, 9.0, 6.0)
    pt_min: float = 0.1
    pt_max: float = 10.0
    eta_max: float = 0.8
    tpc_efficiency: float = 0.90
    tpc_resolution: tuple[float, ...] = (0.065, 0.065, 0.065, 0.055)
    tpc_tail_fraction: float = 0.03
    tpc_tail_scale: float = 2.5
    tof_scenario: str = "run3"
    tof_plateau: float | None = None
    tof_turn_on_slope: float = 0.25
    tof_species_factor_pt: tuple[float, ...] = (0.5, 1.0, 2.0)
    tof_kaon_factor: tuple[float, ...] = (0.62, 0.87, 0.95)
    tof_proton_factor: tuple[float, ...] = (0.58, 1.0, 1.0)
    tof_radius_m: float = 3.8
    field_t: float = 0.5
    tof_resolution_ns: float = 0.080
    tof_tail_fraction: float = 0.05
    tof_tail_scale: float = 2.0
    tof_mismatch_fraction: float = 0.03
    tof_mismatch_window_ns: tuple[float, float] = (-1.0, 30.0)
    secondary_fraction: tuple[float, ...] = (0.03, 0.01, 0.12, 0.30)
    secondary_dca_scale_cm: tuple[float, ...] = (0.15, 0.15, 0.08, 0.40)
    bayes_priors: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    bayes_tpc_cut: float = 5.0
    bayes_tof_tail: float = 0.9
    bayes_missing_fraction: float = 0.03

    def __post_init__(self):
        problems = []
        if self.n_tracks < 1:
            problems.append(f"n_tracks must be >= 1, got {self.n_tracks}")
        for name in ("species_fractions", "spectrum_temperature", "spectrum_n", "tpc_resolution",
                     "secondary_fraction", "secondary_dca_scale_cm", "bayes_priors"):
            value = getattr(self, name)
            if len(value) != NUM_CLASSES:
                problems.append(f"{name} needs {NUM_CLASSES} values (pi, ka, pr, el), got {list(value)}")
        if any(f < 0 for f in self.species_fractions) or sum(self.species_fractions) <= 0:
            problems.append(f"species_fractions must be >= 0 with a positive sum, got {list(self.species_fractions)}")
        if self.tof_scenario not in TOF_SCENARIOS:
            problems.append(f"tof_scenario must be one of {TOF_SCENARIOS}, got {self.tof_scenario!r}")
        if not 0 < self.pt_min < self.pt_max:
            problems.append(f"need 0 < pt_min < pt_max, got {self.pt_min}, {self.pt_max}")
        for name in ("tpc_efficiency", "tpc_tail_fraction", "tof_tail_fraction",
                     "tof_mismatch_fraction", "bayes_missing_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if problems:
            raise DataError("simulator: " + "; ".join(problems))

    @property
    def plateau(self) -> float:
        return self.tof_plateau if self.tof_plateau is not None else _TOF_PLATEAU[self.tof_scenario]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SimulatorConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise DataError(f"simulator: unknown parameters {unknown}; known are {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ----------------------------------------------------------------------------- spectra
class _SpectrumTable:
    """Piecewise-constant pT density per species: sampled and evaluated identically."""

    def __init__(self, cfg: SimulatorConfig, n_cells: int = 8192):
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
def tof_efficiency(cfg: SimulatorConfig, pt: np.ndarray) -> np.ndarray:
    """TOF matching probability of each species, shape [N, 4]."""
    pt_on = physics.tof_min_pt(cfg.tof_radius_m, cfg.field_t)
    base = cfg.plateau * (1.0 - np.exp(-np.maximum(pt - pt_on, 0.0) / cfg.tof_turn_on_slope))
    kaon = np.interp(pt, cfg.tof_species_factor_pt, cfg.tof_kaon_factor)
    proton = np.interp(pt, cfg.tof_species_factor_pt, cfg.tof_proton_factor)
    return np.stack([base, base * kaon, base * proton, base], axis=-1)


def _expected(cfg: SimulatorConfig, p, length):
    """Expected TPC signal, TOF time and DCA resolution per species, each [N, 4]."""
    masses = np.asarray(MASSES_GEV)
    p2 = p[:, None]
    dedx = physics.tpc_expected_signal(p2, masses)
    with np.errstate(invalid="ignore"):
        t_exp = physics.tof_expected_time(p2, length[:, None], masses)
    beta = p2 / np.sqrt(p2 * p2 + masses**2)
    sigma_dca = physics.dca_resolution_cm(p2, beta)
    return dedx, t_exp, sigma_dca


def _log_mix_normal(x, mean, sigma, tail_fraction, tail_scale):
    # NaN expectations (no TOF hit possible) stay NaN; callers mask them out.
    with np.errstate(invalid="ignore"):
        core = np.log1p(-tail_fraction) + physics.log_normal_pdf(x, mean, sigma)
        if tail_fraction <= 0:
            return core
        tail = np.log(tail_fraction) + physics.log_normal_pdf(x, mean, sigma * tail_scale)
        return np.logaddexp(core, tail)


def _draw_mix_normal(rng, n, tail_fraction, tail_scale):
    z = rng.standard_normal(n)
    return np.where(rng.random(n) < tail_fraction, z * tail_scale, z)


# ----------------------------------------------------------------------------- main
def _simulate_chunk(cfg: SimulatorConfig, table: _SpectrumTable, rng: np.random.Generator, n: int):
    fractions = np.asarray(cfg.species_fractions, dtype=np.float64)
    species = rng.choice(NUM_CLASSES, size=n, p=fractions / fractions.sum())
    pt = np.empty(n)
    for c in range(NUM_CLASSES):
        sel = species == c
        pt[sel] = table.sample(rng, c, int(sel.sum()))
    eta = rng.uniform(-cfg.eta_max, cfg.eta_max, n)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    charge = np.where(rng.random(n) < 0.5, 1, -1)
    p = pt * np.cosh(eta)
    length = physics.tof_track_length(pt, eta, radius_m=cfg.tof_radius_m, field_t=cfg.field_t)
    dedx_exp, t_exp, sigma_dca = _expected(cfg, p, length)
    rows = np.arange(n)
    tpc_res = np.asarray(cfg.tpc_resolution)

    # TPC dE/dx: relative resolution with a wider-resolution tail population.
    has_tpc = rng.random(n) < cfg.tpc_efficiency
    mean = dedx_exp[rows, species]
    signal = mean * (1.0 + tpc_res[species] * _draw_mix_normal(rng, n, cfg.tpc_tail_fraction, cfg.tpc_tail_scale))

    # TOF: matching efficiency, resolution with tail, mismatched hits.
    eff_tof = tof_efficiency(cfg, pt)
    has_tof = (rng.random(n) < eff_tof[rows, species]) & np.isfinite(length)
    mismatch = rng.random(n) < cfg.tof_mismatch_fraction
    t_light = length / physics.C_M_PER_NS
    lo, hi = cfg.tof_mismatch_window_ns
    t_true = t_exp[rows, species] + cfg.tof_resolution_ns * _draw_mix_normal(
        rng, n, cfg.tof_tail_fraction, cfg.tof_tail_scale)
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
    tpc_ll = _log_mix_normal(signal[:, None], dedx_exp, tpc_res * dedx_exp,
                             cfg.tpc_tail_fraction, cfg.tpc_tail_scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp += np.where(has_tpc[:, None], np.log(eff) + tpc_ll, np.log1p(-eff))
        eff_tof = tof_efficiency(cfg, pt)
        lo, hi = cfg.tof_mismatch_window_ns
        delta = (t_meas - length / physics.C_M_PER_NS)[:, None]
        in_window = (delta >= lo) & (delta <= hi)
        log_mis = np.where(in_window, np.log(cfg.tof_mismatch_fraction) - np.log(hi - lo), -np.inf)
        core = np.log1p(-cfg.tof_mismatch_fraction) + _log_mix_normal(
            t_meas[:, None], t_exp, cfg.tof_resolution_ns, cfg.tof_tail_fraction, cfg.tof_tail_scale)
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


def simulate(config: SimulatorConfig | None = None, *, return_truth: bool = False,
             chunk_size: int = 500_000, **overrides):
    """Simulate a table of tracks in the 21-column schema, with the oracle posterior.

    **Arguments:**

    - `config`: a `SimulatorConfig`; keyword `overrides` replace its fields
      (`simulate(n_tracks=10_000, seed=1)`).
    - `return_truth`: also return generator truth (secondary, TOF mismatch) as a dict.
    - `chunk_size`: tracks generated at a time (bounds memory; part of the RNG stream).

    **Returns:** a `pandas.DataFrame` with the 21 feature columns (missing detector
    values are NaN), `mc_pdg`, and `oracle_prob_{pi,ka,pr,el}`.
    """
    cfg = dataclasses.replace(config or SimulatorConfig(), **overrides)
    rng = np.random.default_rng(cfg.seed)
    table = _SpectrumTable(cfg)
    parts, truths = [], []
    for start in range(0, cfg.n_tracks, chunk_size):
        cols, truth = _simulate_chunk(cfg, table, rng, min(chunk_size, cfg.n_tracks - start))
        parts.append(cols)
        truths.append(truth)
    df = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    if return_truth:
        return df, {k: np.concatenate([t[k] for t in truths]) for k in truths[0]}
    return df


__all__ = ["SimulatorConfig", "TOF_SCENARIOS", "simulate", "tof_efficiency"]
