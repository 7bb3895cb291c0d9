"""Every python and bash block in README.md and docs/*.md runs, top to bottom, so the docs cannot rot.

Large sizes are shrunk as docs/index.md documents: each `pidx fit` gets SMALL_FIT appended (later
--set values win; NO_REPORT too unless the page's code looks into that run's report) and `pidx simulate
--n` is capped. Blocks after `<!-- docs-test: skip ... -->`
(the set-up commands CI runs itself) are not executed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SMALL_FIT = ("--set data.n_tracks=20000 --set trainer.max_epochs=2 --set trainer.batch_size=256 "
             "--set evaluation.gbdt_max_iter=20 --set evaluation.report_max_tracks=2000")
NO_REPORT = "--set evaluation.report=false"  # the report's figures: half a small fit's time, tested elsewhere
BLOCK = re.compile(r"(<!-- docs-test: skip[^>]*-->\s*)?```(python|bash)\n(.*?)```", re.S)


def blocks(page: Path):
    return [(lang, code, bool(skip)) for skip, lang, code in BLOCK.findall(page.read_text())]


def reports_read(page: Path) -> set[str]:
    """The run directories whose `report/` a code block of `page` looks into (their fits keep writing one)."""
    return {m for _, code, skip in blocks(page) if not skip for m in re.findall(r"([\w./-]+)/report\b", code)}


def shrink_bash(code: str, *, reports: set[str] | None = None) -> str:
    """Append SMALL_FIT to the arguments of each `pidx fit` (before a comment, pipe, redirect, &, && or ;),
    and NO_REPORT unless `reports` is None or holds its `--output`."""
    code = re.sub(r"[ \t]*\\\n[ \t]*", " ", code)  # a command continued over lines is one command

    def add(m):
        args = m.group(1).rstrip()
        output = re.search(r"--output\s+(\S+)", args)
        keep = reports is None or (output is not None and output.group(1).strip("\"'") in reports)
        return f"{args} {SMALL_FIT if keep else SMALL_FIT + ' ' + NO_REPORT}{m.group(1)[len(args):]}"

    code = re.sub(r"(pidx fit (?:(?!\s#|\s\||\s\d?>|\s&|;)[^\n])*)", add, code)
    return re.sub(r"(pidx simulate [^\n]*--n )(\d+)", lambda m: m.group(1) + str(min(int(m.group(2)), 20000)), code)


def test_shrink_inserts_overrides_before_comments_and_pipes():
    line = "pidx fit r.yaml --output x --quiet 2>&1 | grep E   # note"
    assert shrink_bash(line) == f"pidx fit r.yaml --output x --quiet {SMALL_FIT} 2>&1 | grep E   # note"
    assert shrink_bash("pidx fit a.yaml   # c") == f"pidx fit a.yaml {SMALL_FIT}   # c"
    assert shrink_bash("pidx fit a.yaml --quiet &") == f"pidx fit a.yaml --quiet {SMALL_FIT} &"  # in the background
    assert shrink_bash("pidx fit a.yaml \\\n  --quiet\n") == f"pidx fit a.yaml --quiet {SMALL_FIT}\n"
    assert shrink_bash("pidx simulate --n 1000000 --out t.parquet") == "pidx simulate --n 20000 --out t.parquet"
    assert shrink_bash("pidx fit a.yaml --output r | tail", reports=set()) == \
        f"pidx fit a.yaml --output r {SMALL_FIT} {NO_REPORT} | tail"
    assert shrink_bash("pidx fit a.yaml --output r", reports={"r"}) == f"pidx fit a.yaml --output r {SMALL_FIT}"


def test_only_the_runs_whose_report_a_page_reads_write_one():
    assert reports_read(ROOT / "docs" / "evaluation.md") == {"runs/priors_demo"}
    assert reports_read(ROOT / "docs" / "quickstart.md") == {"runs/quickstart"}
    assert reports_read(ROOT / "docs" / "deployment.md") == set()


def test_every_page_has_blocks_and_skips_only_setup():
    for page in PAGES:
        for lang, code, skip in blocks(page):
            if skip:
                assert "pip install" in code, f"{page.name}: only set-up commands may be skipped:\n{code}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    found = blocks(page)
    if not found:
        pytest.skip(f"{page.name} has no code blocks")
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    namespace = {"__name__": f"docs_{page.stem}"}
    reports = reports_read(page)
    for i, (lang, code, skip) in enumerate(found):
        if skip:
            continue
        if lang == "python":
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        else:
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", shrink_bash(code, reports=reports)], env=env,
                                  capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"{page.name} block {i} failed:\n{code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_evaluation_shows_the_figures_the_report_writes():
    """docs/evaluation.md shows docs/img/'s figures, which docs/figures.py renders from a report: every one
    it shows exists and is one of docs/figures.py's (which the page's own code block checks a report writes)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("figures", ROOT / "docs" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    text = (ROOT / "docs" / "evaluation.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\(img/([^)]+)\)", text)
    assert sorted(shown) == sorted(figures.FIGURES)
    assert all((ROOT / "docs" / "img" / name).stat().st_size > 10_000 for name in shown)
    assert f"shown = {list(figures.FIGURES)}".replace("'", '"') in " ".join(text.split())


def test_recipe_reference_is_current():
    from pidx.recipe import reference_markdown

    text = (ROOT / "docs" / "recipes.md").read_text()
    embedded = text.split("<!-- reference:start -->\n")[1].split("<!-- reference:end -->")[0]
    assert embedded == reference_markdown(), "docs/recipes.md is stale: regenerate the table from pidx.recipe"
