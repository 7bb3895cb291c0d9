"""The embedded simulator: ALICE-like tracks in the O2 or legacy layout with MC truth and the exact
posteriors (the oracle, and the vector oracle of the 46 model inputs).

- `simulate`: physics (`physics`: Bethe–Bloch, TOF, kinematics), detectors (`detectors`: TRD, ITS,
  EMCal, HMPID), the shared machinery (`common`) and one module per layout (`o2`, `legacy`);
- `cache`: the data module's `simulate` source, cached on disk (registered on import).
"""

from .cache import SIMULATION_CACHE_VERSION, simulated_tracks, simulator_source
from .simulate import DATA_SCENARIO, SCENARIOS, SimulatorConfig, simulate

__all__ = ["SIMULATION_CACHE_VERSION", "simulated_tracks", "simulator_source", "DATA_SCENARIO", "SCENARIOS",
           "SimulatorConfig", "simulate"]
