// Draws the "time per operation" chart of each predicted item from the JSON next to it.
// The chart repeats the routing table's figures; the table stays the accessible source.
(function () {
  "use strict";
  if (typeof Plotly === "undefined") { return; }
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var source = document.getElementById(el.dataset.chart);
    if (!source) { return; }
    var d = JSON.parse(source.textContent);
    var setup = {
      type: "bar", name: "Setup (minutes)", x: d.labels, y: d.setup, offsetgroup: 1, marker: { color: "#7a9cc6" },
      error_y: { type: "data", symmetric: false, array: d.setup_plus, arrayminus: d.setup_minus, color: "#38506b" },
      hovertemplate: "%{x}<br>setup %{y:.1f} min<extra></extra>"
    };
    var run = {
      type: "bar", name: "Run (minutes per unit)", x: d.labels, y: d.run, yaxis: "y2", offsetgroup: 2, marker: { color: "#1f5fa8" },
      error_y: { type: "data", symmetric: false, array: d.run_plus, arrayminus: d.run_minus, color: "#14324f" },
      hovertemplate: "%{x}<br>run %{y:.3f} min/unit<extra></extra>"
    };
    var layout = {
      barmode: "group", height: 300, margin: { l: 60, r: 70, t: 10, b: 70 },
      legend: { orientation: "h", y: -0.3 },
      yaxis: { title: { text: "setup minutes" }, rangemode: "tozero" },
      yaxis2: { title: { text: "run minutes per unit" }, overlaying: "y", side: "right", rangemode: "tozero" },
      font: { family: "system-ui, sans-serif", size: 12 }
    };
    Plotly.newPlot(el, [setup, run], layout, { displayModeBar: false, responsive: true });
  });
})();
