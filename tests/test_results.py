"""docs/results.md and README's measurement tables are exactly what benchmarks/render.py writes from
the committed JSON in benchmarks/results/: prose and numbers cannot drift apart."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
spec = importlib.util.spec_from_file_location("render", ROOT / "benchmarks" / "render.py")
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)
PAGES = sorted({page for page, _ in render.BLOCKS})


@pytest.mark.parametrize("page", PAGES)
def test_result_tables_are_what_the_json_gives(page):
    text = (ROOT / page).read_text()
    assert render.rendered(text, page) == text, f"{page} is stale: python benchmarks/render.py"


def test_a_changed_measurement_changes_the_page(tmp_path):
    """The check can fail: a number changed in the JSON shows up in the rendered page."""
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path / "results")
    bench = json.loads((tmp_path / "results" / "predict_stream.json").read_text())
    bench["rows"][0]["peak_rss_gb"] = 12.34
    (tmp_path / "results" / "predict_stream.json").write_text(json.dumps(bench))
    text = (ROOT / "docs" / "results.md").read_text()
    changed = render.rendered(text, "docs/results.md", tmp_path / "results")
    assert changed != text and "| 12.34 |" in changed


def test_every_result_page_has_its_blocks():
    for (page, block), _ in render.BLOCKS.items():
        text = (ROOT / page).read_text()
        assert f"<!-- results:{block} -->" in text and f"<!-- /results:{block} -->" in text, (page, block)
