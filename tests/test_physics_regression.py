"""A change that costs physics turns the suite red.

One fast `pidx fit` of the main recipe on the simulator (500 k simulated tracks, about 97 k in the mid
range, 10 epochs: about a minute on 2 cores) must stay as close to the vector oracle (the exact posterior of its 46 inputs, on
the same test tracks) as today's code does. The bounds are today's gaps plus a margin for what a
different seed of the same code moves (calibrated below); a point of accuracy lost anywhere in the
data, model, training or posterior code is far outside them.
"""

import json
from pathlib import Path

from pidx.cli import main

RECIPE = str(Path(__file__).parent.parent / "recipes" / "fse_phase1_mid.yaml")
# Measured with this code at seeds 231 / 232 / 233 (each its own split, so test-sample noise included), on the
# 2-core CPU: 0.231 / 0.351 / 0.246 pp of accuracy, 0.00305 / 0.00278 / 0.00176 of macro AUC and
# 0.0107 / 0.0104 / 0.0094 of NLL from the vector oracle. The test runs seed 231; the bounds are the worst
# seed plus about two thirds of it again. A lost point of accuracy is 1 pp.
BOUNDS = {"gap_to_vector_oracle_pp": 0.60, "auc_gap_to_vector_oracle": 0.0050, "nll_gap_to_vector_oracle": 0.016}


def test_the_main_recipe_stays_near_its_ceiling(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", RECIPE, "--set", "data.n_tracks=500000", "--set", "trainer.max_epochs=10",
                 "--set", "evaluation.baselines=[vector_oracle]", "--set", "evaluation.report=false",
                 "--output", str(out), "--quiet"]) == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    gaps = {k: test[k] for k in BOUNDS}
    assert all(gaps[k] < BOUNDS[k] for k in BOUNDS), f"further from the vector oracle than today's code: {gaps}"
