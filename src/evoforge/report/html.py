"""One self-contained HTML page per run: Plotly.js and the page script are embedded, so the file
opens offline and can be mailed (about 5 MB, nearly all of it Plotly.js).

The run's data goes into the page as JSON inside a ``<script type="application/json">`` element
with ``<``, ``>`` and ``&`` escaped, and the page script writes every user-supplied string
(task names, descriptions, failure reasons) with ``textContent``: nothing from a run is parsed
as HTML or run as code. Script errors while the page builds are listed in ``#js-errors`` (the
headless browser test reads it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from evoforge.errors import ConfigError
from evoforge.layout import make_folder

REPORT_NAME = "report.html"


def write_report(run_dir: str | Path, out: str | Path | None = None, *, compare: Sequence[str | Path] = ()) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN/report.html``) and return its
    path. ``compare`` runs are overlaid (fronts and hypervolume curves against one reference);
    they must have the same objectives. ``out`` may be a folder (the report goes in it as
    ``report.html``); an existing file is replaced, atomically, only when it is an evoforge report."""
    from evoforge.report.data import collect_run, objective_names, shared_reference

    runs = [Path(run_dir), *(Path(r) for r in compare)]
    names = [objective_names(r) for r in runs]
    for run, objectives in zip(runs[1:], names[1:]):
        if objectives != names[0]:
            raise ConfigError(f"cannot compare {run}: its objectives {objectives} differ from {runs[0]}'s {names[0]}")
    path = _report_path(Path(out) if out is not None else runs[0] / REPORT_NAME)
    reference = shared_reference(runs) if compare else None
    data = [collect_run(r, reference) for r in runs]
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        scratch.write_text(render(data), encoding="utf-8")
        scratch.replace(path)
    except OSError as exc:
        scratch.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the report to {path}: {exc.strerror or exc}; give a path you can write to") from None
    return path


def _report_path(path: Path) -> Path:
    """Where the report goes: ``path``, or ``path/report.html`` for a folder. Its folder is made;
    an existing file is replaced only when it is an evoforge report."""
    if path.is_dir():
        path = path / REPORT_NAME
    if path.exists() and not _is_report(path):
        raise ConfigError(f"{path} exists and is not an evoforge report; give a new file name or remove that file")
    make_folder(path.parent, "report folder")
    return path


def _is_report(path: Path) -> bool:
    """Whether ``path`` holds a page `render` wrote (its title opens the head)."""
    try:
        with path.open("rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    return head.startswith(b"<!DOCTYPE html>") and b"<title>evoforge report: " in head


def render(runs: Sequence[dict[str, Any]]) -> str:
    """The page for ``runs`` (the first is the report's run; the others are overlaid)."""
    import plotly.offline

    title = "evoforge report: " + " vs ".join(r["name"] for r in runs)
    return _PAGE.format(
        title=_escape_text(title),
        css=_asset("report.css"),
        plotly=plotly.offline.get_plotlyjs(),
        data=script_json(list(runs)),
        script=_asset("report.js"),
    )


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside a ``<script>`` element (no ``</script>``, no
    comment or CDATA openers, no raw ampersands)."""
    text = json.dumps(value, allow_nan=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _escape_text(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _asset(name: str) -> str:
    return resources.files("evoforge.report").joinpath("assets", name).read_text(encoding="utf-8")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
<script>
window.evoforgeErrors = [];
window.addEventListener("error", function (e) {{ window.evoforgeErrors.push(String(e.message || e)); }});
</script>
<script>{plotly}</script>
</head>
<body>
<header><h1 id="title"></h1><div id="warnings"></div><pre id="headline"></pre></header>
<nav><a href="#front">Front</a> <a href="#progress">Progress</a> <a href="#members">Members</a>
<a href="#matters">What matters</a> <a href="#failures">Failures</a></nav>
<section id="front"><h2>The front</h2><p class="hint">Click a legend entry to show or hide a group; click a point for its details.
The star is the baseline; the ringed point is the knee of the front.</p>
<div id="pairs" class="grid"></div><div id="parallel"></div></section>
<section id="progress"><h2>Progress</h2><div class="grid"><div id="hv-evals" class="plot"></div><div id="hv-time" class="plot"></div>
<div id="failures-plot" class="plot"></div><div id="rates" class="plot"></div></div></section>
<section id="members"><h2>Members of the front</h2>
<p class="hint">Click a column to sort. Filter with rules such as <code>quality_drop &lt;= 1, size_ratio &lt; 0.5</code>;
click a row for its details.</p>
<label>Filter <input id="filter" size="60" placeholder="quality_drop &lt;= 1"></label> <span id="filter-status"></span>
<div class="scroll"><table id="members-table"></table></div>
<div id="detail"></div></section>
<section id="matters"><h2>What matters</h2><p class="hint">How much more often a setting appears among front members than among all
successful candidates (lift; above 1: over-represented on the front).</p><div id="lift" class="plot wide"></div></section>
<section id="failures"><h2>Failures</h2><div class="scroll"><table id="failures-table"></table></div></section>
<pre id="js-errors"></pre>
<script type="application/json" id="report-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
