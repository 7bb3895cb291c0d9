"""The simulator as the data module's `simulate` source, with an on-disk cache keyed by every parameter."""

from __future__ import annotations

import dataclasses

from ..data.datamodule import cache_dir
from ..data.files import read_table, write_table
from ..data.sources import register_source
from ..utils import stable_hash
from .simulate import SimulatorConfig, simulate

SIMULATION_CACHE_VERSION = 3  # bump when the simulator's output for a config changes (3: vector oracle)


def simulated_tracks(config: SimulatorConfig, *, use_cache: bool = True):
    """Simulate (or read from the on-disk cache in `$PIDX_CACHE_DIR`, keyed by every parameter) a track table."""
    if not use_cache:
        return simulate(config)
    key = stable_hash({"v": SIMULATION_CACHE_VERSION, **config.to_dict()})
    path = cache_dir() / f"simulated-{key}.parquet"
    if path.is_file():
        return read_table(path)
    df = simulate(config)
    write_table(df, path)
    return df


def simulator_source(config, *, track_layout: str = "auto", use_cache: bool = True):
    """(table, its layout, description) of a `SimulatorConfig`, a dict of its fields or None (defaults),
    in `track_layout` (`auto`: the config's own)."""
    cfg = SimulatorConfig.from_dict(config) if isinstance(config, dict) else (config or SimulatorConfig())
    if track_layout != "auto" and cfg.layout != track_layout:
        cfg = dataclasses.replace(cfg, layout=track_layout)
    frame = simulated_tracks(cfg, use_cache=use_cache)
    return frame, cfg.layout, f"simulator(n_tracks={cfg.n_tracks}, seed={cfg.seed})"


register_source("simulate", simulator_source)

__all__ = ["SIMULATION_CACHE_VERSION", "simulated_tracks", "simulator_source"]
