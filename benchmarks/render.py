"""Write the measurement tables of docs/results.md and README.md from the benchmarks' JSON.

    python benchmarks/render.py            # rewrite the tables from benchmarks/results/*.json
    python benchmarks/render.py --check    # exit 1 if a page differs from what the JSON gives

Each table sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->` in a page and is
written only from `benchmarks/results/<source>.json`, the file a benchmark script wrote with
`--out benchmarks/results`; its caption gives the command, commit, device and date. Nothing
between the markers is written by hand (tests/test_results.py holds it), so prose and numbers
cannot drift: to update a table, rerun its benchmark and render.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TREES = ("[gbdt]", "[xgboost]", "[lightgbm]")
RANGES = {"full": "full (p > 0.1 GeV/c)", "mid": "mid (0.7–1.5 GeV/c)", "high": "high (1–3 GeV/c)"}


def _n(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _caption(data: dict) -> str:
    return (f"*`{data['command']}` at commit {data['commit']} on {data['device']}, {data['date']}.*")


def _table(head: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def headline(physics: dict) -> str:
    """Per range: FSE Phase 1, the best tree on accuracy, and the ceiling of its inputs (the vector oracle)."""
    rows = []
    for rng in (r for r in RANGES if any(x["range"] == r for x in physics["rows"])):
        own = [x for x in physics["rows"] if x["range"] == rng and x["tracks_of"] == rng]
        model = next(x for x in own if x["method"] == "fse_phase1")
        trees = [x for x in own if x["method"] in TREES]
        best = max(trees, key=lambda x: x["accuracy"]) if trees else None
        ceiling = next((x for x in own if x["method"] == "[vector_oracle]"), None)
        for name, x in (("**pidx FSE Phase 1**", model), (f"best tree ({best['method'][1:-1]})" if best else None, best),
                        ("ceiling: exact posterior of the same inputs", ceiling)):
            if x is not None:
                rows.append([RANGES[rng], name, _n(x["accuracy"]), _n(x["macro_auc"]), _n(x["nll"])])
    return _table(["range", "method", "accuracy", "macro AUC", "NLL"], rows) + "\n\n" + _caption(physics) + \
        f" {physics['rows'][0]['tracks']:,} test tracks in the full range; every row on the same test tracks."


def physics_table(physics: dict) -> str:
    rows = [[x["range"], x["method"], _n(x["accuracy"]), _n(x["balanced_accuracy"]), _n(x["macro_auc"]), _n(x["nll"]),
             _n(x["ece"]), _n(x.get("vector_gap_pp"), 2), _n(x.get("vector_auc_gap")), _n(x.get("vector_nll_gap")),
             _n(x.get("gap_pp"), 2), f"{x['tracks']:,}"] for x in physics["rows"]]
    head = ["range", "method", "accuracy", "bal. acc. (weighted)", "macro AUC", "NLL", "ECE",
            "from vector oracle (pp)", "AUC", "NLL", "from oracle (pp)", "test tracks"]
    return _table(head, rows) + "\n\n" + _caption(physics) + f" Recipe overrides: `{' '.join(physics['overrides'])}`."


def main_job_line(job: dict) -> str:
    return (f"The main job takes **{job['wall_s'] / 60:.0f} minutes** on this project's {job['device']} "
            f"({job['epochs_run']} epochs on {job['train_tracks']:,} train tracks at {job['tracks_per_s']:,.0f} "
            f"tracks/s, then its baselines and report; peak host memory {job['peak_rss_gb']:.1f} GB) and reaches "
            f"accuracy {job['accuracy']:.4f}, macro AUC {job['macro_auc']:.4f}, NLL {job['nll']:.4f} on "
            f"{job['test_tracks']:,} test tracks; on a GPU it has not been measured ([results](docs/results.md)).")


def main_job_table(job: dict) -> str:
    rows = [[f"{job['wall_s']:.0f}", f"{job['train_s']:.0f}", job["epochs_run"], f"{job['train_tracks']:,}",
             f"{job['tracks_per_s']:,.0f}", f"{job['peak_rss_gb']:.2f}", _n(job["accuracy"]), _n(job["macro_auc"]),
             _n(job["nll"]), f"{job['test_tracks']:,}"]]
    head = ["wall (s)", "training (s)", "epochs", "train tracks", "tracks/s", "peak host memory (GB)", "accuracy",
            "macro AUC", "NLL", "test tracks"]
    return _table(head, rows) + "\n\n" + _caption(job)


def predict_table(bench: dict) -> str:
    rows = [[f"{r['tracks']:,}", r["path"], "–" if r["wall_s"] is None else f"{r['wall_s']:.0f}",
             "–" if r["tracks_per_s"] is None else f"{r['tracks_per_s']:,.0f}",
             r.get("note") or f"{r['peak_rss_gb']:.2f}"] for r in bench["rows"]]
    commit = f" at commit {bench['commit']}" if "commit" in bench else ""
    caption = (f"*`{bench['command'].split(' --out')[0]}`{commit} on {bench['machine']}, {bench['date']}, chunks "
               f"of {bench['chunk_tracks']:,} tracks.*")
    return _table(["tracks", "path", "wall (s)", "tracks/s", "peak host memory (GB)"], rows) + "\n\n" + caption


def _rate(value) -> str:
    return "–" if value is None else f"{value:,.0f}"


def throughput_table(bench: dict) -> str:
    peak, gemm = bench.get("peak_gflops"), bench.get("gemm_gflops")

    def share(rate, of):
        return "–" if of is None else f"{100 * rate / of:.0f} %"

    rows = [[r["label"], f"{r['batch']:,}", _rate(r["pidx_tracks_per_s"]), _rate(r["peer_tracks_per_s"]),
             "–" if r["peer_tracks_per_s"] is None else f"{r['pidx_tracks_per_s'] / r['peer_tracks_per_s']:.2f}",
             f"{r['pidx_gflops_per_s']:.1f}", share(r["pidx_gflops_per_s"], peak), share(r["pidx_gflops_per_s"], gemm),
             str(r.get("pidx_step_blocks", "–")), f"{r['pidx_compile_s']:.1f}", f"{r['pidx_parameters']:,}",
             "–" if r["peer_parameters"] is None else f"{r['peer_parameters']:,}"] for r in bench["rows"]]
    head = ["model", "batch", "pidx tracks/s", "peer tracks/s", "ratio", "pidx GFLOP/s", "of FP32 peak",
            "of one matrix product's rate", "blocks per step", "pidx compile (s)", "parameters pidx",
            "parameters peer"]
    return _table(head, rows) + "\n\n" + _caption(bench) + (
        f" Peer: {bench['peer'] or 'not run'}; {bench['precision']}; {bench['train_tracks']:,} train and "
        f"{bench['val_tracks']:,} validation tracks, {bench['timed_epochs']} timed epochs after a warm-up epoch. "
        f"GFLOP/s: XLA's cost analysis of the compiled forward and backward pass × tracks/s; FP32 peak "
        f"{'unknown' if peak is None else f'{peak:.0f} GFLOP/s'} = {bench['peak_how']}"
        + ("" if gemm is None else f"; one f32 matrix product [4096, 256] × [256, 768] compiled by XLA reached "
                                   f"{gemm:.0f} GFLOP/s in the same run (the cores run above the base clock)")
        + ". Blocks per step: how many cache-sized blocks pidx's train step computes a batch in "
        "(`Trainer(step_block=...)`; 1 = the whole batch at once). pidx's FSE parameter counts "
        "include the zero padding of its stacked group embeddings (rows that never change).")


def latency_table(bench: dict) -> str:
    digits = {"s": 2}  # seconds to the hundredth; rates and microseconds whole
    rows = [[r["measurement"], f"{r['value']:,.{digits.get(r['unit'], 0)}f} {r['unit']}", r.get("detail", "")]
            for r in bench["rows"]]
    return _table(["measurement", "result", "detail"], rows) + "\n\n" + _caption(bench) + \
        f" Model: {bench['model']} at the recipes' size."


def ensemble_table(bench: dict) -> str:
    rows = [[r["model"], f"{r['train_tracks']:,}", f"{r['ensemble_wall_s']:.1f} ({r['ensemble_compile_s']:.1f})",
             f"{r['sequential_wall_s']:.1f} ({r['sequential_compile_s']:.1f})",
             f"{r['sequential_wall_s'] / r['ensemble_wall_s']:.2f}×",
             f"{r['ensemble_accuracy']:.4f} / {r['ensemble_balanced_accuracy']:.4f}",
             f"{r['members_mean_accuracy']:.4f} / {r['members_mean_balanced_accuracy']:.4f}",
             f"{r['members_best_accuracy']:.4f} / {r['members_best_balanced_accuracy']:.4f}",
             f"{r['max_weight_difference']:.1e}"] for r in bench["rows"]]
    k = bench["members"]
    head = ["model", "train tracks", "ensemble wall s (compile)", f"{k} sequential wall s (compile)", "speed-up",
            "ensemble accuracy / bal. acc.", "members' mean", "members' best", "max abs weight difference"]
    return _table(head, rows) + "\n\n" + _caption(bench) + (
        f" K = {k} members, {bench['epochs']} epochs without early stopping, {bench['range']} range of "
        f"{bench['n_tracks']:,} simulated tracks; balanced accuracy of the argmax.")


PRECISION_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy (argmax)",
                   "macro_auc": "macro AUC", "nll": "NLL"}


def precision_table(bench: dict) -> str:
    def cells(x):
        return " / ".join(_n(x[m]) for m in PRECISION_NAMES)

    pairs = [[r["seed"], cells(r["f32"]), cells(r["bf16"]), f"{r['f32']['epochs']} / {r['bf16']['epochs']}"]
             for r in bench["rows"]]
    order = " / ".join(PRECISION_NAMES.values())
    first = _table(["seed", f"f32: {order}", f"bf16: {order}", "epochs f32 / bf16"], pairs)
    scale = 100, 100, 1, 1

    def signed(value, factor, digits):
        return "–" if value is None else f"{factor * value:+.{digits}f}"

    summary = [[PRECISION_NAMES[s["measure"]] + (" (pp)" if f == 100 else ""),
                f"{signed(s['mean_difference'], f, 2 if f == 100 else 4)} ± "
                f"{'–' if s['standard_error'] is None else format(f * s['standard_error'], '.2f' if f == 100 else '.4f')}",
                "–" if s["f32_spread"] is None else format(f * s["f32_spread"], ".2f" if f == 100 else ".4f")]
               for s, f in zip(bench["summary"], scale)]
    second = _table(["measure", "bf16 − f32 (standard error)", "spread of f32 over seeds (std)"], summary)
    return first + "\n\n" + second + "\n\n" + _caption(bench) + (
        f" `{bench['recipe']}` at {bench['n_tracks']:,} simulated tracks, at most {bench['max_epochs']} epochs "
        f"(early stopping), each seed fitted once in each precision.")


def domain_shift_table(bench: dict) -> str:
    """Per model and range, each method on the data scenario's test tracks, then what adapting costs
    when the target is MC itself."""
    results = bench["results"]
    lines = ["| model | range | method | accuracy | macro AUC | NLL | recovered (acc / NLL) |", "|---|---|---|---|---|---|---|"]
    for key, rows in results.items():
        model, rng_name = key.split("/")
        for name in ("mc_only", "reweight", "dann", "data_trained", "vector_oracle", "oracle", "xgboost_mc"):
            if name not in rows:
                continue
            r = rows[name]
            rec = r.get("recovered")
            rec_text = "–" if not rec else " / ".join("–" if v is None else f"{v:.0%}" for v in rec.values())
            lines.append(f"| {model} | {rng_name} | {name} | {r['accuracy']:.4f} | {r['macro_auc']:.4f} | "
                         f"{r['nll']:.4f} | {rec_text} |")
    lines += ["", "| model | range | adaptation with MC as the target | accuracy on MC | MC-only on MC | cost (pp) |",
              "|---|---|---|---|---|---|"]
    for key, rows in results.items():
        model, rng_name = key.split("/")
        for name in ("same_reweight", "same_dann"):
            lines.append(f"| {model} | {rng_name} | {name[5:]} | {rows[name]['accuracy']:.4f} | "
                         f"{rows['mc_only_on_mc']['accuracy']:.4f} | {rows[name]['cost_pp']:+.2f} |")
    settings = bench["settings"]
    return "\n".join(lines) + "\n\n" + _caption(bench) + (
        f" MC: {settings['mc_tracks']:,} simulated tracks; data (target, and labelled for `data_trained`) and each test "
        f"file: {settings['data_tracks']:,}; at most {settings['epochs']} epochs per fit (early stopping as shipped).")



def shift_attribution_table(bench: dict) -> str:
    """Per part of the data scenario and range: the perfect MC model, with EM abundances, the data's ceiling."""
    rows = []
    for key, r in bench["results"].items():
        part, rng_name = key.split("/")
        gap = r["mc_model_em"]["nll"] - r["data_oracle"]["nll"]
        rows.append([part, rng_name, *(f"{r[m]['accuracy']:.4f}" for m in ("mc_model", "mc_model_em", "data_oracle")),
                     *(f"{r[m]['nll']:.4f}" for m in ("mc_model", "mc_model_em", "data_oracle")),
                     f"{gap:+.4f}", f"{r['share']:.0%}"])
    head = ["part of the shift", "range", "acc: perfect MC model", "acc: + EM abundances", "acc: data oracle",
            "NLL: perfect MC model", "NLL: + EM abundances", "NLL: data oracle", "NLL left", "share of all"]
    return _table(head, rows) + "\n\n" + _caption(bench) + (
        f" {bench['settings']['tracks']:,} simulated tracks per part (before the momentum ranges); every "
        "posterior is exact (the simulator's densities), on the 46 inputs.")


# (page, block name) → (JSON source, renderer)
BLOCKS = {
    ("README.md", "headline"): ("physics", headline),
    ("README.md", "main_job"): ("main_job", main_job_line),
    ("docs/results.md", "physics"): ("physics", physics_table),
    ("docs/results.md", "main_job"): ("main_job", main_job_table),
    ("docs/results.md", "predict_stream"): ("predict_stream", predict_table),
    ("docs/results.md", "throughput"): ("throughput", throughput_table),
    ("docs/results.md", "latency"): ("latency", latency_table),
    ("docs/results.md", "ensemble"): ("ensemble", ensemble_table),
    ("docs/results.md", "precision"): ("precision", precision_table),
    ("docs/results.md", "domain_shift"): ("domain_shift", domain_shift_table),
    ("docs/results.md", "shift_attribution"): ("shift_attribution", shift_attribution_table),
}


def rendered(text: str, page: str, results: Path = RESULTS) -> str:
    """`text` (a page) with each of its result blocks rewritten from the JSON in `results`."""
    for (name_page, block), (source, render) in BLOCKS.items():
        if name_page != page:
            continue
        data = json.loads((results / f"{source}.json").read_text())
        pattern = re.compile(rf"(<!-- results:{block} -->\n).*?(<!-- /results:{block} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{page}: no <!-- results:{block} --> … <!-- /results:{block} --> block")
        text = pattern.sub(lambda m: m.group(1) + render(data) + "\n" + m.group(2), text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 where a page differs")
    args = ap.parse_args(argv)
    stale = []
    for page in sorted({p for p, _ in BLOCKS}):
        path = ROOT / page
        text = path.read_text()
        new = rendered(text, page)
        if new != text:
            stale.append(page)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run python benchmarks/render.py)", file=sys.stderr)
        return 1
    print(("rewrote " if stale else "up to date: ") + ", ".join(stale or sorted({p for p, _ in BLOCKS})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
