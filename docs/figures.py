"""Render the report figures docs/evaluation.md shows, from a small run of the main recipe.

    python docs/figures.py          # fits 500,000 simulated tracks for 10 epochs, then copies the figures

The figures are the ones `pidx fit` writes into `<run>/report/`, copied into docs/img/ under the
same names (`FIGURES`); tests/test_docs.py checks that evaluation.md shows exactly these and that
the report still writes each of them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("efficiency_purity_vs_p.png", "dedx_vs_p.png", "tof_beta_vs_p.png", "output_train_test.png",
           "input_distributions.png", "input_correlations.png", "feature_importance.png")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run([sys.executable, "-m", "pidx.cli", "fit", str(ROOT / "recipes" / "fse_phase1_mid.yaml"),
                        "--set", "data.n_tracks=500000", "--set", "trainer.max_epochs=10", "--output", str(run),
                        "--quiet"], check=True)
        for name in FIGURES:
            shutil.copyfile(run / "report" / name, ROOT / "docs" / "img" / name)
    print(f"wrote {len(FIGURES)} figures into docs/img/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
