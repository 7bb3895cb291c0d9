"""The GPU benchmark suite's small mode: every section runs on the CPU and writes its JSON and Markdown."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_gpu_suite_small_mode_runs_every_section(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), str(tmp_path), "--small",
                           "--no-torch"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_suite.json").read_text())
    sections = results["sections"]
    assert set(sections) == {"throughput", "recipes", "inference", "scaling", "precision"}
    assert all(s["complete"] for s in sections.values()), {k: s.get("status") for k, s in sections.items()}
    throughput = sections["throughput"]["rows"]
    # the MLP with BatchNorm and FSE at both sizes, in f32 and bf16, each with a positive rate
    assert {(r["model"], r["precision"]) for r in throughput} == {
        (m, p) for m in ("dnn", "fse_phase1 d=64", "fse_phase1 d=256") for p in ("f32", "bf16")}
    assert all(r["pidx_tracks_per_s"] > 0 and r["pidx_compile_s"] > 0 for r in throughput)
    recipe = sections["recipes"]["rows"][0]
    assert recipe["recipe"] == "simplenn_mid" and recipe["epochs"] == 1 and recipe["wall_s"] >= recipe["fit_s"] > 0
    units = {r["unit"] for r in sections["inference"]["rows"]}
    assert units == {"tracks/s", "µs/track"}
    assert sections["scaling"]["rows"][0]["devices"] >= 1
    precision = sections["precision"]["rows"][0]
    assert 0 < precision["f32_accuracy"] <= 1 and 0 < precision["bf16_accuracy"] <= 1
    verdicts = {v["target"]: v for v in results["verdicts"]}
    assert verdicts["fse_d256_b65536_tracks_per_s"]["measured"] is None  # batch 65536 is not in the small mode
    assert verdicts["fse_d256_b1024_tracks_per_s"]["met"] is False  # a CPU is far from an H100's 2.5 M tracks/s
    table = (tmp_path / "gpu_suite.md").read_text()
    assert "## throughput" in table and "| fse_d256_b1024_tracks_per_s | ≥ 2.5e+06 |" in table
