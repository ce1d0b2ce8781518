// evoforge report page: builds the plots and tables from the embedded run data.
// Every string from a run is written with textContent (never innerHTML).
"use strict";
(function () {
  const runs = JSON.parse(document.getElementById("report-data").textContent);
  const main = runs[0];
  const objectives = main.objectives.map((o) => o.name);
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  const CONFIG = { displaylogo: false, responsive: true };
  // Titles sit left over the plot area, clear of Plotly's tool bar at its top right.
  const plotTitle = (text, size) => ({ text, font: { size: size || 13 }, x: 0, xref: "paper", xanchor: "left" });

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
    return String(v);
  }
  function label(p) { return "#" + p.id + " " + p.key.slice(0, 12) + "<br>" + escapeHover(p.description); }
  function escapeHover(s) {  // Plotly renders hover text as HTML-like markup: escape it
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").slice(0, 300);
  }
  function runName(run, i) { return runs.length > 1 ? run.name + ": " : (i ? run.name : ""); }
  function reportError(err) { window.evoforgeErrors.push(String(err && err.stack || err)); }

  document.getElementById("title").textContent =
    "evoforge report: " + runs.map((r) => r.name + " (" + r.domain + ", " + r.algorithm + ")").join(" vs ");
  const WARNING = "WARNING: ";  // headline lines that need the reader's attention get a box of their own
  const warnings = document.getElementById("warnings");
  runs.forEach((r, i) => r.headline.split("\n").filter((line) => line.startsWith(WARNING)).forEach((line) => {
    warnings.appendChild(el("p", runName(r, i) + line.slice(WARNING.length), "warning"));
  }));
  document.getElementById("headline").textContent = runs.map(
    (r) => r.headline.split("\n").filter((line) => !line.startsWith(WARNING)).join("\n")).join("\n\n");

  // ---------------------------------------------------------------- the front
  const EVALUATION = "evaluation";  // the x axis of a single-objective run's plot: the evaluation's id
  function value(p, name) {
    if (name === EVALUATION) return p.id;
    const v = p.objectives[name];
    return v === undefined ? null : v;
  }
  function edge(run, name) {  // where failed candidates are drawn: just past the worst scored value
    const vals = run.points.filter((p) => p.status === "ok").map((p) => value(p, name)).filter((v) => v !== null);
    if (!vals.length) return 1;
    const lo = Math.min(...vals), hi = Math.max(...vals);
    const dir = main.objectives.find((o) => o.name === name).direction;
    return dir === "minimize" ? hi + 0.05 * (hi - lo || 1) : lo - 0.05 * (hi - lo || 1);
  }
  function pairPlot(a, b, container) {
    const div = el("div", null, "plot");
    container.appendChild(div);
    const traces = [];
    runs.forEach((run, r) => {
      const color = COLORS[r % COLORS.length];
      const groups = [
        ["front", run.points.filter((p) => p.front), { size: 10, color: color }, true],
        ["dominated", run.points.filter((p) => p.status === "ok" && p.feasible && !p.front), { size: 6, color: color, opacity: 0.35 }, true],
        ["infeasible", run.points.filter((p) => p.status === "ok" && !p.feasible), { size: 6, color: "#999", symbol: "triangle-up" }, "legendonly"],
      ];
      groups.forEach(([name, pts, marker, visible]) => {
        traces.push({
          type: "scatter", mode: "markers", name: runName(run, r) + name + " (" + pts.length + ")", visible: visible,
          x: pts.map((p) => value(p, a)), y: pts.map((p) => value(p, b)), text: pts.map(label),
          customdata: pts.map((p) => [r, p.id]), hovertemplate: "%{text}<extra></extra>", marker: marker,
        });
      });
      const failed = run.points.filter((p) => p.status !== "ok");
      traces.push({
        type: "scatter", mode: "markers", name: runName(run, r) + "failed (" + failed.length + ", drawn at the edge)",
        visible: "legendonly", x: failed.map((p) => (a === EVALUATION ? p.id : edge(run, a))), y: failed.map(() => edge(run, b)),
        text: failed.map((p) => "#" + p.id + " " + p.status + "<br>" + escapeHover(p.reason)),
        customdata: failed.map((p) => [r, p.id]), hovertemplate: "%{text}<extra></extra>",
        marker: { size: 8, color: "#b00020", symbol: "x" },
      });
      const knee = run.points.find((p) => p.knee);
      if (knee) {
        traces.push({ type: "scatter", mode: "markers", name: runName(run, r) + "knee #" + knee.id, x: [value(knee, a)], y: [value(knee, b)],
          text: [label(knee)], customdata: [[r, knee.id]], hovertemplate: "%{text}<extra></extra>",
          marker: { size: 18, color: "rgba(0,0,0,0)", line: { width: 2, color: "#e69f00" } } });
      }
    });
    if (main.baseline && main.baseline[a] !== undefined && main.baseline[b] !== undefined) {
      traces.push({ type: "scatter", mode: "markers", name: "baseline", x: [main.baseline[a]], y: [main.baseline[b]],
        hovertemplate: "baseline<extra></extra>", marker: { size: 16, symbol: "star", color: "#222" } });
    }
    const layout = { title: plotTitle(b + " vs " + a, 14), xaxis: { title: { text: a } }, yaxis: { title: { text: b } },
      margin: { l: 60, r: 10, t: 40, b: 50 }, legend: { font: { size: 10 } }, hovermode: "closest" };
    Plotly.newPlot(div, traces, layout, CONFIG);
    div.on("plotly_click", (ev) => { const d = ev.points[0].customdata; if (d) showDetail(runs[d[0]], d[1]); });
  }
  const pairs = document.getElementById("pairs");
  if (objectives.length === 1) pairPlot(EVALUATION, objectives[0], pairs);
  for (let i = 0; i < objectives.length; i++)
    for (let j = i + 1; j < objectives.length; j++) pairPlot(objectives[i], objectives[j], pairs);

  // Parallel coordinates (three or more objectives), drawn as lines over normalised axes.
  if (objectives.length >= 3) {
    const scored = runs.flatMap((run) => run.points.filter((p) => p.status === "ok" && p.feasible));
    const ranges = objectives.map((name) => {
      const vals = scored.map((p) => value(p, name)).filter((v) => v !== null);
      return [Math.min(...vals), Math.max(...vals)];
    });
    const norm = (v, k) => (v === null ? null : (v - ranges[k][0]) / ((ranges[k][1] - ranges[k][0]) || 1));
    const traces = [];
    runs.forEach((run, r) => {
      [["dominated", (p) => p.status === "ok" && p.feasible && !p.front, "rgba(150,150,150,0.35)", "legendonly"],
       ["front", (p) => p.front, COLORS[r % COLORS.length], true]].forEach(([name, keep, color, visible]) => {
        const xs = [], ys = [], texts = [];
        run.points.filter(keep).forEach((p) => {
          objectives.forEach((o, k) => { xs.push(k); ys.push(norm(value(p, o), k)); texts.push(label(p) + "<br>" + o + " " + fmt(value(p, o))); });
          xs.push(null); ys.push(null); texts.push("");
        });
        traces.push({ type: "scatter", mode: "lines+markers", name: runName(run, r) + name, x: xs, y: ys, text: texts, visible: visible,
          hovertemplate: "%{text}<extra></extra>", line: { color: color, width: 1.5 }, marker: { size: 5, color: color } });
      });
    });
    Plotly.newPlot("parallel", traces, {
      title: plotTitle("Parallel coordinates (each axis scaled to the range seen; lower is better for minimized objectives)"),
      xaxis: { tickvals: objectives.map((_, k) => k), ticktext: objectives.map((o, k) => o + " [" + fmt(ranges[k][0]) + ", " + fmt(ranges[k][1]) + "]") },
      yaxis: { range: [-0.05, 1.05], showticklabels: false }, margin: { l: 20, r: 10, t: 40, b: 60 }, hovermode: "closest",
    }, CONFIG);
  } else {
    document.getElementById("parallel").remove();
  }

  // ---------------------------------------------------------------- progress
  function lines(div, rowsOf, xKey, xKind, xTitle) {
    const traces = runs.map((run, r) => ({
      type: "scatter", mode: "lines", line: { shape: "hv", color: COLORS[r % COLORS.length] }, name: run.name,
      x: rowsOf(run).map((g) => g[xKey]), y: rowsOf(run).map((g) => g.hypervolume),
    }));
    Plotly.newPlot(div, traces, { title: plotTitle("Hypervolume vs " + xKind),
      xaxis: { title: { text: xTitle } }, yaxis: { title: { text: "hypervolume of all feasible" }, rangemode: "tozero" }, margin: { l: 60, r: 10, t: 40, b: 50 } }, CONFIG);
  }
  lines("hv-evals", (run) => run.progress.curve, "evaluations", "evaluations", "evaluations");
  lines("hv-time", (run) => run.progress.generations, "elapsed_s", "wall seconds", "wall seconds (at the end of each generation, and where the run stopped)");
  const generationRows = (run) => run.progress.generations.filter((g) => g.generation !== null);
  const mostFailures = Math.max(0, ...runs.flatMap((run) => generationRows(run).map((g) => g.failures || 0)));
  const failureTick = mostFailures <= 5 ? 1 : undefined;  // whole candidates, never -1 or 0.5
  Plotly.newPlot("failures-plot", runs.map((run, r) => ({
    type: "bar", name: run.name, x: generationRows(run).map((g) => g.generation),
    y: generationRows(run).map((g) => g.failures), marker: { color: COLORS[r % COLORS.length] },
  })), { title: plotTitle("Failed candidates per generation"), xaxis: { title: { text: "generation" } },
    yaxis: { title: { text: "failures" }, rangemode: "nonnegative", tick0: 0, dtick: failureTick }, margin: { l: 60, r: 10, t: 40, b: 50 } }, CONFIG);
  const withRates = generationRows(main).filter((g) => g.operator_rates);
  if (withRates.length) {
    const names = Object.keys(withRates[0].operator_rates);
    Plotly.newPlot("rates", names.map((n) => ({ type: "scatter", mode: "lines", name: n, stackgroup: "rates",
      x: withRates.map((g) => g.generation), y: withRates.map((g) => g.operator_rates[n]) })),
    { title: plotTitle("Operator probabilities per generation" + (runs.length > 1 ? " (" + main.name + ")" : "")),
      xaxis: { title: { text: "generation" } }, yaxis: { title: { text: "probability" }, range: [0, 1] }, margin: { l: 60, r: 10, t: 40, b: 50 } }, CONFIG);
  } else {
    document.getElementById("rates").remove();
  }

  // ---------------------------------------------------------------- members table
  const members = main.points.filter((p) => p.front);
  const testNames = [...new Set(members.flatMap((p) => Object.keys(p.test || {})))];
  const deltaNames = [...new Set(members.flatMap((p) => Object.keys(p.test_delta || {})))];
  const metricNames = [...new Set(members.flatMap((p) => Object.keys(p.metrics)))];
  const columns = [
    { name: "id", get: (p) => p.id },
    ...objectives.map((o) => ({ name: o, get: (p) => value(p, o) })),
    ...testNames.map((t) => ({ name: "test_" + t, get: (p) => (p.test || {})[t] })),
    ...deltaNames.map((t) => ({ name: "Δtest_" + t, get: (p) => (p.test_delta || {})[t] })),
    ...metricNames.map((m) => ({ name: m, get: (p) => p.metrics[m] })),
    { name: "description", get: (p) => p.description, text: true },
  ];
  let sortColumn = 1, sortDirection = 1, rules = [];
  const table = document.getElementById("members-table");
  function renderTable() {
    table.textContent = "";
    const head = el("tr");
    columns.forEach((c, k) => {
      const th = el("th", c.name);
      if (k === sortColumn) th.className = sortDirection > 0 ? "sorted-asc" : "sorted-desc";
      th.addEventListener("click", () => { sortDirection = k === sortColumn ? -sortDirection : 1; sortColumn = k; renderTable(); });
      head.appendChild(th);
    });
    table.appendChild(head);
    const rows = members.filter((p) => rules.every((rule) => rule(p)));
    const get = columns[sortColumn].get;
    rows.sort((x, y) => {
      const a = get(x), b = get(y);
      if (a === b) return x.id - y.id;
      if (a === null || a === undefined) return 1;
      if (b === null || b === undefined) return -1;
      return (a < b ? -1 : 1) * sortDirection;
    });
    rows.forEach((p) => {
      const tr = el("tr", null, p.knee ? "knee" : "");
      tr.dataset.id = String(p.id);
      columns.forEach((c) => tr.appendChild(el("td", fmt(c.get(p)), c.text ? "text" : "")));
      tr.addEventListener("click", () => showDetail(main, p.id));
      table.appendChild(tr);
    });
    document.getElementById("filter-status").textContent =
      rules.length ? rows.length + " of " + members.length + " members match" : members.length + " members";
  }
  const OPS = { "<=": (a, b) => a <= b, "<": (a, b) => a < b, ">=": (a, b) => a >= b, ">": (a, b) => a > b, "==": (a, b) => a === b, "!=": (a, b) => a !== b };
  function parseRules(text) {
    const parsed = [];
    for (const clause of text.split(/,|\band\b/).map((s) => s.trim()).filter(Boolean)) {
      const m = clause.match(/^([^<>=!\s]+)\s*(<=|>=|==|!=|<|>)\s*(-?[0-9.eE+-]+)$/);
      if (!m) throw new Error("cannot read '" + clause + "': write name <= number");
      const column = columns.find((c) => c.name === m[1]);
      if (!column) throw new Error("no column '" + m[1] + "'; columns: " + columns.map((c) => c.name).join(", "));
      const limit = parseFloat(m[3]), op = OPS[m[2]];
      parsed.push((p) => { const v = column.get(p); return typeof v === "number" && op(v, limit); });
    }
    return parsed;
  }
  document.getElementById("filter").addEventListener("input", (ev) => {
    const status = document.getElementById("filter-status");
    try {
      rules = parseRules(ev.target.value);
      status.className = "";
      renderTable();
    } catch (err) {
      status.textContent = err.message;
      status.className = "bad";
    }
  });
  renderTable();

  // ---------------------------------------------------------------- detail view
  function showDetail(run, id) {
    const p = run.points.find((q) => q.id === id);
    const box = document.getElementById("detail");
    box.textContent = "";
    if (!p) return;
    box.appendChild(el("h3", (runs.length > 1 ? run.name + " " : "") + "#" + p.id + " (" + p.key.slice(0, 12) + "): " + p.status));
    box.appendChild(el("p", p.description, "text"));
    if (p.reason) { box.appendChild(el("h4", "failure reason")); box.appendChild(el("pre", p.reason)); }
    const facts = [["objectives", p.objectives], ["held-out test", p.test], ["change against the baseline (test)", p.test_delta], ["metrics", p.metrics]];
    facts.forEach(([title, obj]) => {
      if (!obj || !Object.keys(obj).length) return;
      box.appendChild(el("h4", title));
      box.appendChild(el("pre", Object.entries(obj).map(([k, v]) => k + ": " + fmt(v)).join("\n")));
    });
    Object.entries(p.details || {}).forEach(([title, text]) => { box.appendChild(el("h4", title)); box.appendChild(el("pre", text)); });
    const series = p.series || {};
    if (series.val_loss_curve && series.val_loss_curve.length) {
      const div = el("div", null, "plot");
      box.appendChild(div);
      Plotly.newPlot(div, [{ type: "scatter", mode: "lines+markers", y: series.val_loss_curve, x: series.val_loss_curve.map((_, i) => i + 1) }],
        { title: plotTitle("Validation loss per training epoch (all stages in order)"),
          xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: "validation loss" } }, margin: { l: 60, r: 10, t: 40, b: 50 } }, CONFIG);
    }
    const rounds = ["latency_rounds_b1", "latency_rounds_batch"].filter((k) => series[k] && series[k].length);
    if (rounds.length) {
      const div = el("div", null, "plot");
      box.appendChild(div);
      Plotly.newPlot(div, rounds.map((k) => ({ type: "box", name: k === "latency_rounds_b1" ? "batch 1" : "batch " + fmt(p.metrics.batch), y: series[k], boxpoints: "all" })),
        { title: plotTitle("Latency ratio to the baseline, each interleaved round"), yaxis: { title: { text: "ratio" } },
          margin: { l: 60, r: 10, t: 40, b: 50 }, showlegend: false }, CONFIG);
    }
    box.scrollIntoView({ block: "nearest" });
  }
  const linked = /^#member=(\d+)$/.exec(window.location.hash);  // report.html#member=12 opens that member
  if (linked) {
    window.addEventListener("load", () => showDetail(main, parseInt(linked[1], 10)));
  }

  // ---------------------------------------------------------------- what matters
  if (main.features.length) {
    const rows = main.features.slice(0, 40).reverse();
    Plotly.newPlot("lift", [{ type: "bar", orientation: "h", x: rows.map((f) => f.lift), y: rows.map((f) => f.setting + " = " + f.value),
      text: rows.map((f) => f.front + " of " + f.evaluations + " evaluations on the front"), hovertemplate: "%{y}: lift %{x:.2f}<br>%{text}<extra></extra>",
      marker: { color: rows.map((f) => (f.lift >= 1 ? "#2ca02c" : "#999")) } }],
    { margin: { l: 260, r: 10, t: 10, b: 40 }, height: 120 + 22 * rows.length, xaxis: { title: { text: "share on the front / share among successful candidates" } },
      shapes: [{ type: "line", x0: 1, x1: 1, yref: "paper", y0: 0, y1: 1, line: { dash: "dot", color: "#555" } }] }, CONFIG);
  } else {
    document.getElementById("lift").appendChild(el("p", "No settings to relate (this domain does not describe its genomes' settings, or the front is empty).", "hint"));
  }

  // ---------------------------------------------------------------- failures
  const failures = main.points.filter((p) => p.status !== "ok");
  const ftable = document.getElementById("failures-table");
  if (!failures.length) {
    ftable.replaceWith(el("p", "No candidate failed.", "hint"));
  } else {
    const head = el("tr");
    ["id", "generation", "status", "reason", "description"].forEach((c) => head.appendChild(el("th", c)));
    ftable.appendChild(head);
    failures.forEach((p) => {
      const tr = el("tr");
      tr.dataset.id = String(p.id);
      [p.id, p.generation, p.status].forEach((v) => tr.appendChild(el("td", fmt(v))));
      tr.appendChild(el("td", p.reason, "text"));
      tr.appendChild(el("td", p.description, "text"));
      tr.addEventListener("click", () => showDetail(main, p.id));
      ftable.appendChild(tr);
    });
  }
})();
window.addEventListener("load", function () {
  document.getElementById("js-errors").textContent = window.evoforgeErrors.join("\n");
});
