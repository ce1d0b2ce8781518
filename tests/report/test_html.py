"""The HTML report: it renders offline in headless Chromium with every plot drawn and every
front member listed, escapes what runs supply, and overlays compared runs on one reference."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import evoforge
from evoforge.errors import ConfigError
from evoforge.problems.domain import BenchmarkDomain
from evoforge.report.data import collect_run
from evoforge.report.html import render, write_report
from tests.support.browser import rendered_dom, require_chromium, screenshot

HOSTILE = '</script><script>window.evoforgeErrors.push("XSS")</script><img src=x onerror="window.evoforgeErrors.push(\'XSS\')">'


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three small benchmark runs: dtlz2 (3 objectives) with petra and with random, zdt1 (2)."""
    root = tmp_path_factory.mktemp("runs")
    settings = {"budget": 60, "pop_size": 10, "workers": 0, "seed": 1}
    evoforge.optimize(BenchmarkDomain("dtlz2"), run_dir=root / "petra", algorithm="petra", **settings)
    evoforge.optimize(BenchmarkDomain("dtlz2"), run_dir=root / "random", algorithm="random", **settings)
    evoforge.optimize(BenchmarkDomain("zdt1"), run_dir=root / "zdt1", **settings)
    return {name: root / name for name in ("petra", "random", "zdt1")}


def _embedded(page: str) -> list[dict]:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match.group(1))


def _errors(dom: str) -> str:
    match = re.search(r'<pre id="js-errors">(.*?)</pre>', dom, re.S)
    assert match, "the page lost its error list"
    return match.group(1)


def test_the_report_renders_offline_with_every_plot_and_member(runs, tmp_path) -> None:
    require_chromium()
    path = write_report(runs["petra"])
    assert path == runs["petra"] / "report.html"
    page = path.read_text()
    assert "https://" not in re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # no CDN: the only scripts are inline
    dom = rendered_dom(path)
    assert _errors(dom) == ""
    plots = re.findall(r'<div[^>]*class="[^"]*js-plotly-plot[^"]*"', dom)
    assert len(plots) >= 3 + 1 + 4  # three objective pairs, parallel coordinates, four progress plots
    assert dom.count('class="main-svg"') >= len(plots)  # each one drew its SVG
    table = re.search(r'<table id="members-table">(.*?)</table>', dom, re.S).group(1)
    listed = {int(i) for i in re.findall(r'data-id="(\d+)"', table)}
    assert listed == {m.id for m in evoforge.load_front(runs["petra"])}
    shot = screenshot(path, tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_strings_from_a_run_are_shown_never_run(runs, tmp_path) -> None:
    data = collect_run(runs["petra"])
    data["name"] = HOSTILE
    member = next(p for p in data["points"] if p["front"])
    member["description"] = HOSTILE
    member["details"] = {HOSTILE: HOSTILE}
    data["points"][-1].update(status="failed", reason=HOSTILE, description=HOSTILE)
    page = render([data])
    assert page.count("</script>") == 4  # the page's own four script elements; the run's text holds none
    assert "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;" in page.split("<body>")[0]  # the title, escaped on the server
    path = tmp_path / "hostile.html"
    path.write_text(page)
    require_chromium()
    dom = rendered_dom(path)
    assert "XSS" not in _errors(dom)
    assert "&lt;img src=x onerror=" in dom  # shown as text in the failures table


def test_compared_runs_share_one_reference_and_need_the_same_objectives(runs, tmp_path) -> None:
    out = write_report(runs["petra"], tmp_path / "compare.html", compare=[runs["random"]])
    data = _embedded(out.read_text())
    assert [d["algorithm"] for d in data] == ["petra", "random"]
    assert data[0]["reference"] == data[1]["reference"]
    assert all(d["progress"]["curve"][-1]["evaluations"] == 60 for d in data)
    curve = [c["hypervolume"] for c in data[0]["progress"]["curve"]]
    assert curve == sorted(curve) and curve[-1] > 0  # the archive only grows
    require_chromium()
    dom = rendered_dom(out)
    assert _errors(dom) == "" and "random: front" in dom and "petra: front" in dom
    with pytest.raises(ConfigError, match="its objectives \\['f1', 'f2'\\] differ"):
        write_report(runs["petra"], tmp_path / "bad.html", compare=[runs["zdt1"]])
    assert not (tmp_path / "bad.html").exists()


def test_warnings_under_the_headline_get_a_box_of_their_own(runs, tmp_path) -> None:
    data = collect_run(runs["zdt1"])
    data["headline"] += "\nWARNING: the baseline's validation accuracy 0.100 is no better than always predicting <the most> frequent class"
    path = tmp_path / "warned.html"
    path.write_text(render([data]))
    require_chromium()
    dom = rendered_dom(path)
    assert _errors(dom) == ""
    boxes = re.findall(r'<p class="warning">(.*?)</p>', dom, re.S)
    assert boxes == ["the baseline's validation accuracy 0.100 is no better than always predicting &lt;the most&gt; frequent class"]
    headline = re.search(r'<pre id="headline">(.*?)</pre>', dom, re.S).group(1)
    assert "WARNING" not in headline and headline.startswith("run ")  # the rest of the headline stays where it was


def test_a_single_objective_run_plots_its_objective_against_the_evaluation(tmp_path) -> None:
    from evoforge.testing.domains import SphereDomain

    evoforge.optimize(SphereDomain(), run_dir=tmp_path / "sphere", budget=24, pop_size=6, workers=0, seed=1)
    path = write_report(tmp_path / "sphere")
    require_chromium()
    dom = rendered_dom(path)
    assert _errors(dom) == ""
    pairs = re.search(r'<div id="pairs"[^>]*>(.*?)</section>', dom, re.S)
    assert pairs and 'class="main-svg"' in pairs.group(1)  # the front section drew a plot
    assert "distance vs evaluation" in dom


def test_the_report_replaces_only_a_report(runs, tmp_path) -> None:
    mine = tmp_path / "notes.html"
    mine.write_text("<!DOCTYPE html><title>my notes</title>")
    with pytest.raises(ConfigError, match="notes.html exists and is not an evoforge report; give a new file name"):
        write_report(runs["zdt1"], mine)
    assert mine.read_text() == "<!DOCTYPE html><title>my notes</title>"
    with pytest.raises(ConfigError, match="report folder .*notes.html is a file; give a folder"):
        write_report(runs["zdt1"], mine / "report.html")
    folder = tmp_path / "reports"
    folder.mkdir()
    first = write_report(runs["zdt1"], folder)
    assert first == folder / "report.html" and first.read_text().startswith("<!DOCTYPE html>")
    assert write_report(runs["zdt1"], first) == first  # an earlier report is replaced
    assert sorted(p.name for p in folder.iterdir()) == ["report.html"]  # no scratch file left
