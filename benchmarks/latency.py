"""Start-up and inference speed: import, first training step, predict throughput, ONNX per-track latency.

    python benchmarks/latency.py                     # on whatever device JAX sees
    python benchmarks/latency.py --tracks 1000000 --model fse_phase1

Prints one table:
- `import pidx` in a fresh interpreter (median of 5);
- first step of `Trainer.fit` from a fresh model: trace + compile of the epoch program (cold, no
  persistent cache) and the first epoch's steps;
- `Trainer.predict` tracks/s on preprocessed arrays (warm, eval batch 65536);
- ONNX Runtime (1 CPU thread) per-track latency at batch 1, as an O2Physics task calls it, and its
  tracks/s at batch 65536, next to the seed's 0.4 ms per track.

With `--out DIR` it also writes `DIR/latency.json`, from which `render.py` writes the table in
docs/results.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PIDX_JAX_CACHE", "0")  # cold compile: measure it, do not read it from a cache

import jax  # noqa: E402
import numpy as np  # noqa: E402

import pidx  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from common import provenance, write_result  # noqa: E402
from pidx.data import ArrayDataModule, TrackArrays  # noqa: E402
from pidx.data.layouts import get_layout  # noqa: E402
from pidx.export import export_onnx, input_columns  # noqa: E402
from pidx.models import build_model  # noqa: E402


def import_time() -> float:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import pidx"], check=True, env={**os.environ})
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def onnx_timings(path, x: np.ndarray, provider: str = "CPUExecutionProvider", singles: int = 2000) -> dict:
    """ONNX Runtime on the raw inputs `x`: per-track latency at batch 1 (as an O2Physics task calls
    it; one CPU thread) after a warm-up, median and p99 in µs, and tracks/s at batch 65536."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if provider == "CPUExecutionProvider":
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=[provider])
    for i in range(min(200, len(x))):
        session.run(None, {"tracks": x[i:i + 1]})
    lat = []
    for i in range(min(singles, len(x))):
        t0 = time.perf_counter()
        session.run(None, {"tracks": x[i:i + 1]})
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, len(x), 65536):
        session.run(None, {"tracks": x[i:i + 65536]})
    return {"median_us": 1e6 * statistics.median(lat), "p99_us": 1e6 * float(np.percentile(lat, 99)),
            "batch_tracks_per_s": len(x) / (time.perf_counter() - t0)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fse_phase1")
    ap.add_argument("--tracks", type=int, default=500_000)
    ap.add_argument("--out", type=Path, help="write latency.json in this folder")
    args = ap.parse_args(argv)
    device = jax.devices()[0]
    rows = [{"measurement": "import pidx (fresh interpreter, median of 5)", "value": import_time(), "unit": "s"}]

    dm = pidx.TrackDataModule(simulator=pidx.SimulatorConfig(n_tracks=args.tracks, seed=5),
                              momentum_range="full").setup()
    small = ArrayDataModule(TrackArrays(*(a[:8192] for a in dm.train)), TrackArrays(*(a[:2048] for a in dm.val)),
                            preprocessor=dm.preprocessor)
    model, state = build_model(args.model, dm.layout, key=jax.random.PRNGKey(0))
    trainer = pidx.Trainer(max_epochs=1, batch_size=1024, enable_progress_bar=False, callbacks=[],
                           default_root_dir=tempfile.mkdtemp())
    t0 = time.perf_counter()
    trainer.fit(model, small, state=state)
    s = trainer.summary
    rows.append({"measurement": f"first epoch of Trainer.fit ({args.model}, 8 steps of 1024, no compilation cache)",
                 "value": time.perf_counter() - t0, "unit": "s",
                 "detail": f"compile {s['compile_s']:.2f} s, steps {s['train_s']:.2f} s"})

    arrays = dm.test
    trainer.predict(arrays)  # warm-up: compile
    t0 = time.perf_counter()
    trainer.predict(arrays)
    dt = time.perf_counter() - t0
    rows.append({"measurement": f"Trainer.predict, {arrays.num_tracks:,} tracks (warm)",
                 "value": arrays.num_tracks / dt, "unit": "tracks/s",
                 "detail": f"{1e6 * dt / arrays.num_tracks:.2f} µs/track"})

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = pidx.simulate(n_tracks=args.tracks, seed=9)
        table.to_parquet(tmp / "tracks.parquet")
        onnx_path = tmp / "m.onnx"
        export_onnx(trainer.model, trainer.model_state, dm.preprocessor, onnx_path)
        # the raw file as the exported graph takes it (the O2 layout: the 46-value vector)
        x = get_layout(dm.preprocessor.track_layout).canonical(table)[list(input_columns(dm.preprocessor))]
        t = onnx_timings(onnx_path, x.to_numpy(np.float32))
        rows.append({"measurement": "ONNX Runtime, batch 1, 1 thread (as an O2Physics task calls it), median",
                     "value": t["median_us"], "unit": "µs/track",
                     "detail": f"p99 {t['p99_us']:.0f} µs; the seed's figure: 400 µs"})
        rows.append({"measurement": "ONNX Runtime, batch 65536, 1 thread", "value": t["batch_tracks_per_s"],
                     "unit": "tracks/s"})

    print(f"\ndevice: {device.device_kind} ({device.platform}), {os.cpu_count()} CPU cores; model {args.model} "
          f"(default recipe size)\n")
    print("| measurement | result |\n|---|---|")
    for r in rows:
        print(f"| {r['measurement']} | {r['value']:,.2f} {r['unit']} {r.get('detail', '')} |")
    write_result(args.out, "latency", {**provenance("latency.py", argv), "model": args.model, "rows": rows})


if __name__ == "__main__":
    main()
