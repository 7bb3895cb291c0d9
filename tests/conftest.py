import os

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Simulation cache in a temp dir, so tests never touch ~/.cache."""
    os.environ["PIDX_CACHE_DIR"] = str(tmp_path_factory.mktemp("pidx-cache"))


@pytest.fixture(scope="session")
def sim_df():
    """20k simulated tracks (run3 TOF), NaN-encoded, with oracle columns."""
    from pidx.data import simulate

    return simulate(n_tracks=20_000, seed=7)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
