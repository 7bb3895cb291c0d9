"""README's main job as shipped, timed: `pidx fit recipes/fse_phase1_mid.yaml` on this machine.

    python benchmarks/main_job.py --out benchmarks/results
    python benchmarks/main_job.py --set data.n_tracks=500000 --out /tmp/main_job   # a quicker look

Runs the command in a subprocess with a fresh simulation cache in `--cache` (kept for the next
run; a warm cache skips the 35 s simulation) and records the wall time, peak host memory (from
`wait4`), the epochs, the training's tracks/s and the test metrics from the run's metrics.json, with
the command, commit, device and date. Writes `main_job.json` in `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import ROOT, provenance, write_result  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="sets", nargs="*", default=[], help="recipe overrides (default: none, as shipped)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pidx-main-job-cache")
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    run = Path(tempfile.mkdtemp(prefix="pidx-main-job-")) / "run"
    cmd = ["pidx", "fit", "recipes/fse_phase1_mid.yaml", *[a for s in args.sets for a in ("--set", s)]]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pidx.cli", *cmd[1:], "--output", str(run), "--quiet"], cwd=ROOT,
                            env={**os.environ, "PIDX_CACHE_DIR": str(args.cache)})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    metrics = json.loads((run / "metrics.json").read_text())
    t, test = metrics["training"], metrics["test"]
    result = {**provenance("main_job.py", argv), "command": " ".join(cmd),
              "device": f"CPU, {os.cpu_count()} cores ({platform.machine()})" if t["device"] == "cpu" else t["device"],
              "wall_s": wall, "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,
              "train_s": t["train_s"], "epochs_run": t["epochs_run"], "tracks_per_s": t["tracks_per_s"],
              "train_tracks": metrics["data"]["train"]["n_tracks"], "test_tracks": test["n_tracks"],
              "accuracy": test["accuracy"], "macro_auc": test["macro_auc"], "nll": test["nll"]}
    write_result(args.out, "main_job", result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
