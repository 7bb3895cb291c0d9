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
import numpy as np
import pandas as pd

from ..errors import DataError
from ..data.schema import NUM_CLASSES
from .common import SpectrumTable, tof_efficiency
from .legacy import simulate_legacy_chunk
from .o2 import simulate_o2_chunk

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
    - `bayes_missing_fraction`: tracks whose Bayes output is missing at random (legacy layout).
    - `layout`: `o2` (the `pid_features` tree of the O2 extractor, all seven detector
      groups) or `legacy` (the seed's 21 columns, TPC and TOF only).
    - `centrality_resolution_slope`: O2 layout; TPC resolution × (1 + slope·(1 − c/100)) at
      FT0C centrality c % (worse in central events).
    - `tof_mismatch_centrality`: O2 layout; mismatch fraction × (1 − k/2 + k·(1 − c/100)):
      more mismatches in central events, the same mean.
    - `tpc_clusters_mean`, `tpc_clusters_sigma`: O2 layout; TPC clusters (60–159); the
      dE/dx resolution scales as √(mean/clusters).
    - `its_hit_efficiency`, `its_cluster_size_mip`: O2 layout; per-layer hit probability and
      the mean extra cluster size λ of a MIP at η = 0 (size = 1 + Poisson(λ·dE/dx·cosh η)).
    - `trd_plateau`, `trd_resolution`, `trd_tr_strength`, `trd_tr_onset_gamma`: O2 layout;
      TRD matching plateau, log-normal signal resolution, transition-radiation gain and its γ onset.
    - `emcal_match_efficiency`: O2 layout; EMCal matching inside its acceptance, per species.
    - `hmpid_efficiency`, `hmpid_index`, `hmpid_photons_max`, `hmpid_background_photons`,
      `hmpid_angle_resolution`, `hmpid_background_fraction`: O2 layout; HMPID matching inside its
      acceptance, C6F14 refractive index, photons at β = 1, background photons, single-photon
      angle resolution (rad) and the fraction of rings replaced by background.
    - `tpc_nsigma_shift`, `tpc_nsigma_width`, `tof_time_offset_ns`, `tof_nsigma_width`: how the
      detectors' response differs from the calibration the n-sigma (and the Bayesian PID) assume:
      the TPC n-sigma peak sits at the shift (in σ) with this width (in σ), the TOF time is late by the
      offset and its resolution this many times `tof_resolution_ns`. 0, 1, 0, 1 in MC (calibrated by
      construction); `DATA_SCENARIO` sets them as collision data has them. The oracle follows the true
      response.
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
    layout: str = "o2"
    centrality_resolution_slope: float = 0.15
    tof_mismatch_centrality: float = 1.5
    tpc_clusters_mean: float = 130.0
    tpc_clusters_sigma: float = 15.0
    its_hit_efficiency: float = 0.97
    its_cluster_size_mip: float = 1.7
    trd_plateau: float = 0.55
    trd_resolution: float = 0.35
    trd_tr_strength: float = 0.7
    trd_tr_onset_gamma: float = 800.0
    emcal_match_efficiency: tuple[float, ...] = (0.80, 0.80, 0.75, 0.95)
    hmpid_efficiency: float = 0.03
    hmpid_index: float = 1.2904
    hmpid_photons_max: float = 20.0
    hmpid_background_photons: float = 1.0
    hmpid_angle_resolution: float = 0.05
    hmpid_background_fraction: float = 0.08
    tpc_nsigma_shift: float = 0.0
    tpc_nsigma_width: float = 1.0
    tof_time_offset_ns: float = 0.0
    tof_nsigma_width: float = 1.0

    def __post_init__(self):
        problems = []
        if self.n_tracks < 1:
            problems.append(f"n_tracks must be >= 1, got {self.n_tracks}")
        for name in ("species_fractions", "spectrum_temperature", "spectrum_n", "tpc_resolution",
                     "secondary_fraction", "secondary_dca_scale_cm", "bayes_priors", "emcal_match_efficiency"):
            value = getattr(self, name)
            if len(value) != NUM_CLASSES:
                problems.append(f"{name} needs {NUM_CLASSES} values (pi, ka, pr, el), got {list(value)}")
        if any(f < 0 for f in self.species_fractions) or sum(self.species_fractions) <= 0:
            problems.append(f"species_fractions must be >= 0 with a positive sum, got {list(self.species_fractions)}")
        if self.layout not in ("o2", "legacy"):
            problems.append(f"layout must be 'o2' or 'legacy', got {self.layout!r}")
        if not 0.0 <= self.tof_mismatch_centrality <= 2.0:
            problems.append(f"tof_mismatch_centrality must be in [0, 2], got {self.tof_mismatch_centrality}")
        for name in ("its_hit_efficiency", "trd_plateau", "hmpid_efficiency", "hmpid_background_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if any(not 0.0 <= e <= 1.0 for e in self.emcal_match_efficiency):
            problems.append(f"emcal_match_efficiency must be in [0, 1], got {list(self.emcal_match_efficiency)}")
        if self.tof_scenario not in TOF_SCENARIOS:
            problems.append(f"tof_scenario must be one of {TOF_SCENARIOS}, got {self.tof_scenario!r}")
        if not 0 < self.pt_min < self.pt_max:
            problems.append(f"need 0 < pt_min < pt_max, got {self.pt_min}, {self.pt_max}")
        for name in ("tpc_efficiency", "tpc_tail_fraction", "tof_tail_fraction",
                     "tof_mismatch_fraction", "bayes_missing_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("tpc_nsigma_width", "tof_nsigma_width"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
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


# A controlled MC → data shift, of the sizes ALICE's calibrations leave between MC and collision data:
# the TPC n-sigma peak off by 0.3 σ and 15 % wider (the post-calibration residuals of dE/dx splines
# and η/multiplicity maps), the TOF time late by 20 ps and its resolution 25 % worse (event-time and
# channel calibration residuals), TOF matching 8 points lower (the TPC–TOF matching efficiency that
# MC overestimates), and other abundances (more kaons and protons than the generator's).
DATA_SCENARIO = {"tpc_nsigma_shift": 0.3, "tpc_nsigma_width": 1.15, "tof_time_offset_ns": 0.020,
                 "tof_nsigma_width": 1.25, "tof_plateau": 0.57, "species_fractions": (0.64, 0.08, 0.18, 0.10)}
SCENARIOS = {"mc": {}, "data": DATA_SCENARIO}


def simulate(config: SimulatorConfig | None = None, *, return_truth: bool = False,
             chunk_size: int = 500_000, believed: SimulatorConfig | None = None, **overrides):
    """Simulate a table of tracks (O2 `pid_features` layout or the legacy 21 columns) with the oracle.

    **Arguments:**

    - `config`: a `SimulatorConfig`; keyword `overrides` replace its fields
      (`simulate(n_tracks=10_000, seed=1)`).
    - `return_truth`: also return generator truth (secondary, TOF mismatch) as a dict.
    - `chunk_size`: tracks generated at a time (bounds memory; part of the RNG stream).
    - `believed`: another configuration that differs only in the detector response and abundances
      (the keys of `DATA_SCENARIO`; O2 layout): the truth (so `return_truth` is implied) then also holds
      `believed_vector_oracle` `[N, 4]`, the exact posterior that physics assigns to these tracks' 46
      inputs: on a data scenario with `believed` the MC, what a perfect model of the MC outputs.

    **Returns:** a `pandas.DataFrame`: with `layout="o2"` every branch of `pid_features` with
    O2's missing-value conventions and MC truth (`pidx.simulation.o2`); with `"legacy"` the
    21 feature columns (missing values NaN) and `mc_pdg`; both with `oracle_prob_{pi,ka,pr,el}`,
    the O2 layout also with `vector_oracle_prob_{pi,ka,pr,el}` (the oracle given the 46-value vector).
    """
    cfg = dataclasses.replace(config or SimulatorConfig(), **overrides)
    rng = np.random.default_rng(cfg.seed)
    table = SpectrumTable(cfg)
    chunk_fn = simulate_o2_chunk if cfg.layout == "o2" else simulate_legacy_chunk
    extra = {}
    if believed is not None:
        other = [f.name for f in dataclasses.fields(cfg) if f.name not in (*DATA_SCENARIO, "n_tracks", "seed")
                 and getattr(cfg, f.name) != getattr(believed, f.name)]
        if other or cfg.layout != "o2":
            raise ValueError(f"the believed physics may differ in {sorted(DATA_SCENARIO)} only (O2 layout), "
                             f"not in {other or ['layout']}")
        extra, return_truth = {"believed": (believed, SpectrumTable(believed))}, True
    parts, truths = [], []
    for start in range(0, cfg.n_tracks, chunk_size):
        cols, truth = chunk_fn(cfg, table, rng, min(chunk_size, cfg.n_tracks - start), **extra)
        parts.append(cols)
        truths.append(truth)
    df = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    if return_truth:
        return df, {k: np.concatenate([t[k] for t in truths]) for k in truths[0]}
    return df


__all__ = ["SimulatorConfig", "TOF_SCENARIOS", "DATA_SCENARIO", "SCENARIOS", "simulate", "tof_efficiency"]
