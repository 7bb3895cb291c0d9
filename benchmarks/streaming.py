"""Data bigger than memory: peak host memory and training speed of streamed `pidx fit` runs.

    python benchmarks/streaming.py                                  # 8 files × 5 M tracks (40 M)
    python benchmarks/streaming.py --files 2 --tracks-per-file 1000000

1. Simulates a folder of `--files` Parquet files of `--tracks-per-file` O2-layout tracks each
   (seeds 0, 1, ...; kept in `--folder` for the next run).
2. **Streamed, whole folder:** one epoch of `simplenn_full` with `data.memory_budget=--budget`, from a
   fresh stream cache (its two passes over the files count in the wall time).
3. **Side by side on the first file,** which both paths can hold: the in-memory path (budget 64 GB)
   and the streamed path (`--budget`), one epoch each.

Each fit is a `pidx fit` subprocess; its peak resident memory comes from `wait4`. Baselines and the
report are off: the benchmark measures reading, training and evaluating. The tracks/s column is the
Trainer's own (training steps only); "tracks used" is train + validation + test against the number
of tracks of the files inside the momentum range (p > 0.1 GeV/c), counted here from the `p` column.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "simplenn_full.yaml"


def make_folder(folder: Path, files: int, tracks: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = folder / f"tracks-{i:02d}.parquet"
        if not path.exists():  # a subprocess, so the simulation's memory is not this process's
            code = ("import sys; from pidx.simulation import simulate; from pidx.data.files import write_table; "
                    f"write_table(simulate(n_tracks={tracks}, seed={i}), sys.argv[1])")
            subprocess.run([sys.executable, "-c", code, str(path)], check=True)
        paths.append(path)
    return paths


def in_range_tracks(paths: list[Path], low: float = 0.1) -> int:
    import pyarrow.parquet as pq

    return sum(int(np.sum(pq.read_table(p, columns=["p"]).column("p").to_numpy() > low)) for p in paths)


def fit(source: Path, budget: str, out: Path, cache: Path, batch: int) -> dict:
    cmd = [sys.executable, "-m", "pidx.cli", "fit", str(RECIPE), "--output", str(out), "--quiet",
           "--set", f"data.source={source}", "--set", f"data.memory_budget={budget}",
           "--set", "trainer.max_epochs=1", "--set", f"trainer.batch_size={batch}",
           "--set", "evaluation.baselines=[]", "--set", "evaluation.report=false"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "PIDX_CACHE_DIR": str(cache)})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"pidx fit failed: {' '.join(cmd)}")
    metrics = json.loads((out / "metrics.json").read_text())
    data = metrics["data"]
    return {"peak_gb": usage.ru_maxrss * 1024 / 1e9, "wall_s": wall,
            "tracks_per_s": metrics["training"]["tracks_per_s"],
            "used": sum(data[k]["n_tracks"] for k in ("train", "val", "test")),
            "streamed": "streamed" in data, "accuracy": metrics["test"]["accuracy"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--tracks-per-file", type=int, default=5_000_000)
    ap.add_argument("--budget", default="2GB", help="data.memory_budget of the streamed runs")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "pidx-stream-bench")
    args = ap.parse_args(argv)
    data = args.folder / f"data-{args.files}x{args.tracks_per_file}"
    t0 = time.perf_counter()
    paths = make_folder(data, args.files, args.tracks_per_file)
    print(f"data: {args.files} × {args.tracks_per_file:,} tracks in {data} ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    runs = {}
    with tempfile.TemporaryDirectory(dir=args.folder) as work:
        work = Path(work)
        single = data / "single"  # the first file alone, as its own source
        single.mkdir(exist_ok=True)
        if not (single / paths[0].name).exists():
            os.link(paths[0], single / paths[0].name)
        plan = [(f"streamed, {args.files} files", data, args.budget, paths),
                ("in memory, 1 file", single, "64GB", paths[:1]),
                ("streamed, 1 file", single, args.budget, paths[:1])]
        for name, source, budget, files in plan:
            res = fit(source, budget, work / name.replace(" ", "_").replace(",", ""), work / f"cache-{len(runs)}",
                      args.batch_size)
            res["in_range"] = in_range_tracks(files)
            runs[name] = res
            print(f"  {name}: {res}", flush=True)
    print(f"\nsimplenn_full, one epoch, batch {args.batch_size}, streamed budget {args.budget} "
          f"({os.cpu_count()} CPU cores)\n")
    print("| run | streamed | peak host memory (GB) | train tracks/s | tracks used / in range | wall (s) |")
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {'yes' if r['streamed'] else 'no'} | {r['peak_gb']:.2f} | {r['tracks_per_s']:,.0f} | "
              f"{r['used']:,} / {r['in_range']:,} | {r['wall_s']:.0f} |")
    ratio = runs["streamed, 1 file"]["tracks_per_s"] / runs["in memory, 1 file"]["tracks_per_s"]
    print(f"\nstreamed / in-memory training throughput on the same file: {ratio:.2f}")


if __name__ == "__main__":
    main()
