"""`pidx predict` on files larger than memory: peak host memory and tracks/s, streamed vs in memory.

    python benchmarks/predict_stream.py                          # 2 M and 20 M tracks
    python benchmarks/predict_stream.py --tracks 2000000 --folder /data/bench

1. Simulates 2 M O2-layout tracks once and writes ROOT files of `--tracks` tracks each (the 2 M
   block repeated, in baskets of 50,000 entries of one `pid_features` tree), kept in `--folder`.
2. Trains a small `fse_phase1_full` run (100 k tracks, 2 epochs) to predict with, unless `--run`.
3. For each file: `pidx predict` as shipped (streamed in chunks of `--chunk-tracks`) and the
   in-memory path it replaced (read the whole file, score it, write it), each a subprocess whose
   peak resident memory comes from `wait4`. The in-memory path is not run where its estimate
   (about 2 KB per track) exceeds 80 % of the machine's memory.

Prints a table and writes `predict_stream.json` in `--out`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import provenance, write_result  # noqa: E402

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "fse_phase1_full.yaml"
BLOCK = 2_000_000
IN_MEMORY = """
import sys, numpy as np
from pidx.data.files import read_tracks_raw, write_table
from pidx.data.io import tracks_from_frame
from pidx.data.schema import CLASS_NAMES, PROB_COLUMNS
from pidx.runs.build import load_predictor
from pidx.runs.rundir import RunDir
run, inp, out = sys.argv[1:4]
recipe, predictor, _ = load_predictor(RunDir.open(run), recipe_priors=True)
raw = read_tracks_raw(inp, tree=recipe.data.tree)
pre = predictor.preprocessor
table = tracks_from_frame(raw.frame, source=raw.source, track_layout=pre.track_layout, dtypes=raw.dtypes,
                          layout=pre.layout, require_label=False, read_labels=False, on_invalid="keep")
probs = predictor.probs(predictor.arrays(table))
frame = raw.frame.copy()
for i, c in enumerate(PROB_COLUMNS):
    frame[c] = probs[:, i].astype(np.float32)
frame["pred"] = np.asarray(CLASS_NAMES)[probs.argmax(1)]
write_table(frame, out)
"""


def run_measured(cmd: list[str], env=None) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{err[-2000:]}")
    return {"wall_s": wall, "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9}


def make_files(folder: Path, sizes: list[int]) -> dict[int, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    block = folder / "block.parquet"
    if not block.exists():
        code = ("import sys; from pidx.simulation import simulate; from pidx.data.files import write_table; "
                f"write_table(simulate(n_tracks={BLOCK}, seed=11), sys.argv[1])")
        subprocess.run([sys.executable, "-c", code, str(block)], check=True)
    paths = {}
    for n in sizes:
        path = folder / f"pid_features_{n}.root"
        if not path.exists():
            code = f"""
import sys, uproot, pandas as pd
from pidx.data.files import root_branches
from pidx.data.layouts import O2_FILE_BRANCHES
block = pd.read_parquet(sys.argv[1])
branches = root_branches(block, sys.argv[2], O2_FILE_BRANCHES)
left = {n}
with uproot.recreate(sys.argv[2] + ".tmp") as f:
    tree = f.mktree("pid_features", {{k: v.dtype for k, v in branches.items()}})
    while left > 0:  # baskets of 50,000 entries, the order of ROOT's own (auto-flush at ~30 MB)
        for a in range(0, min(left, len(block)), 50_000):
            take = min(50_000, left)
            tree.extend({{k: v[a:a + take] for k, v in branches.items()}})
            left -= take
"""
            subprocess.run([sys.executable, "-c", code, str(block), str(path)], check=True)
            os.replace(str(path) + ".tmp", path)
        paths[n] = path
    return paths


def small_run(out: Path, cache: Path) -> Path:
    if not (out / "metrics.json").exists():
        subprocess.run([sys.executable, "-m", "pidx.cli", "fit", str(RECIPE), "--output", str(out), "--quiet",
                        "--overwrite", "--set", "data.n_tracks=100000", "--set", "trainer.max_epochs=2",
                        "--set", "evaluation.baselines=[]", "--set", "evaluation.report=false"],
                       check=True, env={**os.environ, "PIDX_CACHE_DIR": str(cache)})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, nargs="+", default=[2_000_000, 20_000_000])
    ap.add_argument("--folder", type=Path, default=Path("/tmp/pidx-predict-bench"))
    ap.add_argument("--run", type=Path, default=None, help="a run directory to predict with")
    ap.add_argument("--chunk-tracks", type=int, default=32_768)
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    cache = args.folder / "cache"
    env = {**os.environ, "PIDX_CACHE_DIR": str(cache)}
    run = args.run or small_run(args.folder / "run", cache)
    files = make_files(args.folder, args.tracks)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    rows = []
    for n, path in files.items():
        out = args.folder / "pred.parquet"
        streamed = run_measured([sys.executable, "-m", "pidx.cli", "predict", str(run), "--input", str(path),
                                 "--output", str(out), "--chunk-tracks", str(args.chunk_tracks)], env)
        rows.append({"tracks": n, "path": "streamed (pidx predict)", **streamed, "tracks_per_s": n / streamed["wall_s"]})
        need = 2e3 * n / 1e9
        if need > 0.8 * memory:
            rows.append({"tracks": n, "path": "in memory", "wall_s": None, "peak_rss_gb": None, "tracks_per_s": None,
                         "note": f"not run: needs about {need:.0f} GB, the machine has {memory:.0f} GB"})
        else:
            whole = run_measured([sys.executable, "-c", IN_MEMORY, str(run), str(path), str(out)], env)
            rows.append({"tracks": n, "path": "in memory", **whole, "tracks_per_s": n / whole["wall_s"]})
        out.unlink(missing_ok=True)
    result = {**provenance("predict_stream.py", argv),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GB",
              "chunk_tracks": args.chunk_tracks, "rows": rows}
    write_result(args.out, "predict_stream", result)
    print("| tracks | path | wall (s) | tracks/s | peak host memory (GB) |\n|---|---|---|---|---|")
    for r in rows:
        if r["wall_s"] is None:
            print(f"| {r['tracks']:,} | {r['path']} | – | – | {r['note']} |")
        else:
            print(f"| {r['tracks']:,} | {r['path']} | {r['wall_s']:.0f} | {r['tracks_per_s']:,.0f} | "
                  f"{r['peak_rss_gb']:.2f} |")
    return result


if __name__ == "__main__":
    main()
