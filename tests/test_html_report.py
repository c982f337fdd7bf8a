"""The HTML report (compare/report/html.py) in a real browser: Debian's Chromium, headless (scripts/setup.sh installs
it). The page must render every plot with data and no JavaScript error, and a screenshot of its first timeline must
not be blank; the same on the committed H100 results (docs/example-report is made from them)."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from compare.report.command import main as report_main
from tests.test_report import null_run

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
H100 = ROOT / "results" / "gpu" / "2026-11-23-nvidia-h100-x1"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=20000"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("no chromium: `apt-get install chromium` (scripts/setup.sh does it where apt is there)")
    return found


def _status(page: Path) -> dict[str, int | str]:
    """The page's own report of itself once loaded (#render-status)."""
    dom = subprocess.run(
        [_chromium(), *FLAGS, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    match = re.search(r'<div id="render-status">plots=(\d+) rendered=(\d+) errors=(\d+)([^<]*)', dom)
    assert match, dom[:2000]
    return {"plots": int(match[1]), "rendered": int(match[2]), "errors": int(match[3]), "messages": match[4]}


def _timeline_screenshot(page: Path, out: Path) -> np.ndarray:
    from matplotlib.image import imread

    shot = out / "timeline.png"
    subprocess.run(
        [_chromium(), *FLAGS, "--window-size=1400,900", f"--screenshot={shot}", page.as_uri() + "#timeline-only"],
        capture_output=True,
        timeout=120,
    )
    return imread(shot)[..., :3]


def _check_page(page: Path, tmp_path: Path, min_plots: int) -> None:
    """Every plot drawn, no JavaScript error, and the first timeline's screenshot not blank."""
    status = _status(page)
    assert status["errors"] == 0, status["messages"]
    assert status["plots"] >= min_plots and status["rendered"] == status["plots"], status
    pixels = _timeline_screenshot(page, tmp_path)
    # the bars' saturated colours (prefill red, decode blue): text, axes and the plot's background are near grey
    coloured = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.35
    # a blank page, or a timeline whose bars never drew, has only the legend's swatches (under 0.1% of the window);
    # six requests' bars cover about 2% of it
    assert coloured.mean() > 0.002, f"screenshot blank: {coloured.mean():.2%} of pixels are the bars' colours"


def test_the_page_renders_every_plot_without_errors_and_its_timeline_is_drawn(tmp_path, config_only_model):
    run = null_run(tmp_path / "runs", config_only_model, "2", output_tokens=16, repetitions=6)
    assert report_main([str(run), "--out", str(tmp_path / "report"), "--html"]) == 0
    page = tmp_path / "report" / "report.html"
    html = page.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?https?:", html)  # nothing fetched at view time
    _check_page(page, tmp_path, min_plots=2)  # a TTFT CDF and the cell's timeline, at least


def test_the_page_made_from_the_committed_h100_results_renders_too(tmp_path):
    assert report_main([str(H100), "--out", str(tmp_path / "report"), "--html"]) == 0
    page = tmp_path / "report" / "report.html"
    _check_page(page, tmp_path, min_plots=10)
    assert page.stat().st_size < 40 * 2**20  # self-contained, Plotly's JavaScript once
