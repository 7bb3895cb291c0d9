import os

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Fits in different tests often compile the same programs: share them across the tests of a worker
# (one cache per xdist worker: two workers writing one entry at once leave a truncated file, which JAX
# then warns about on stderr, where some tests count the lines).
_worker = os.environ.get("PYTEST_XDIST_WORKER")  # set before this file is read; the controller's is inherited
if _worker or "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
        os.environ.get("TMPDIR", "/tmp"), f"pidx-test-jax-cache-{os.getuid()}-{_worker or 'main'}")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # even 0.1 s compiles: ~8 % of a docs page
# One OpenMP thread for XGBoost/LightGBM: pytest-xdist already runs a worker per core, and LightGBM's
# spin-waiting threads, sharing cores with another worker's fit, slowed one small test to 40 minutes.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Simulation cache in a temp dir, so tests never touch ~/.cache."""
    os.environ["PIDX_CACHE_DIR"] = str(tmp_path_factory.mktemp("pidx-cache"))


@pytest.fixture(scope="session")
def sim_df():
    """20k simulated tracks (run3 TOF), NaN-encoded, with oracle columns."""
    from pidx.simulation import simulate

    return simulate(n_tracks=20_000, seed=7, layout="legacy")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
