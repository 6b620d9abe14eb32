// Draws the "time per operation" chart of each predicted item from the JSON next to it.
// The chart repeats the routing table's figures; the table stays the accessible source.
// Plotly (3.5 MB) is fetched only when a chart is first needed: a 1,000-item result page is
// usable before it, and an item's chart is drawn when its details are first opened.
(function () {
  "use strict";
  var plotlySrc = document.documentElement.querySelector("[data-plotly-src]");
  var waiting = [];
  var loading = false;

  function withPlotly(callback) {
    if (typeof Plotly !== "undefined") { callback(); return; }
    waiting.push(callback);
    if (loading || !plotlySrc) { return; }
    loading = true;
    var script = document.createElement("script");
    script.src = plotlySrc.dataset.plotlySrc;
    script.onload = function () { waiting.splice(0).forEach(function (cb) { cb(); }); };
    document.head.appendChild(script);
  }

  function draw(el) {
    if (el.dataset.drawn) { return; }
    var source = document.getElementById(el.dataset.chart);
    if (!source) { return; }
    el.dataset.drawn = "1";
    var d = JSON.parse(source.textContent);
    withPlotly(function () { plot(el, d); });
  }

  // Setup minutes and run minutes per unit differ by orders of magnitude: two panels, one quantity
  // per axis, each starting at zero with a few round ticks.
  function plot(el, d) {
    var setup = {
      type: "bar", name: "Setup (minutes)", x: d.labels, y: d.setup, xaxis: "x", yaxis: "y", marker: { color: "#7a9cc6" },
      error_y: { type: "data", symmetric: false, array: d.setup_plus, arrayminus: d.setup_minus, color: "#38506b" },
      hovertemplate: "%{x}<br>setup %{y:.1f} min<extra></extra>"
    };
    var run = {
      type: "bar", name: "Run (minutes per unit)", x: d.labels, y: d.run, xaxis: "x2", yaxis: "y2", marker: { color: "#1f5fa8" },
      error_y: { type: "data", symmetric: false, array: d.run_plus, arrayminus: d.run_minus, color: "#14324f" },
      hovertemplate: "%{x}<br>run %{y:.3f} min/unit<extra></extra>"
    };
    var axis = { rangemode: "tozero", nticks: 6, tickformat: "~g", automargin: true };
    var layout = {
      height: 300, margin: { l: 50, r: 20, t: 30, b: 60 }, showlegend: false,
      xaxis: { domain: [0, 0.46], automargin: true }, xaxis2: { domain: [0.54, 1], automargin: true, anchor: "y2" },
      yaxis: Object.assign({ title: { text: "setup minutes" } }, axis),
      yaxis2: Object.assign({ title: { text: "run minutes per unit" }, anchor: "x2" }, axis),
      annotations: [
        { text: "Setup (minutes)", xref: "paper", yref: "paper", x: 0.23, y: 1.08, showarrow: false, font: { size: 13 } },
        { text: "Run (minutes per unit)", xref: "paper", yref: "paper", x: 0.77, y: 1.08, showarrow: false, font: { size: 13 } }
      ],
      font: { family: "system-ui, sans-serif", size: 12 }
    };
    Plotly.newPlot(el, [setup, run], layout, { displayModeBar: false, responsive: true });
  }

  document.querySelectorAll("details.item-block").forEach(function (block) {
    var el = block.querySelector("[data-chart]");
    if (!el) { return; }
    if (block.open) { draw(el); }
    block.addEventListener("toggle", function () { if (block.open) { draw(el); } });
  });
  // Following a link to #item-N opens that item.
  function openTarget() {
    var target = location.hash && document.getElementById(location.hash.slice(1));
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
