// Fleet analytics from fleet.stats: anomaly rate per site and per device type, worst devices.
"use strict";
(() => {
  const content = document.getElementById("content");
  content.innerHTML = `
    <div class="grid">
      <div><h2>Anomaly rate per site</h2><div class="chart" id="chart-site"></div></div>
      <div><h2>Anomaly rate per device type</h2><div class="chart" id="chart-device-type"></div></div>
    </div>
    <h2>Worst devices (last 10 windows)</h2>
    <div class="grid"><div class="chart" id="chart-worst"></div><div id="worst-table"></div></div>
    <p class="muted" id="stats-note"></p>`;

  const pct = (u, vals) => vals.map((v) => v === null ? "" : `${(v * 100).toFixed(1)}%`);

  function rates(id, block) {
    const names = Object.keys(block.series);
    const data = [block.ts, ...names.map((n) => block.series[n])];
    es.chart(id, {
      series: [{}, ...es.lines(names)],
      axes: [{}, { values: pct, size: 60 }],
      scales: { y: { range: (u, min, max) => [0, Math.max(max * 1.1, 0.01)] } },
    }, data);
  }

  function worst(rows) {
    const xs = rows.map((_, i) => i);
    es.chart("chart-worst", {
      scales: { x: { time: false, range: [-0.5, Math.max(rows.length - 0.5, 0.5)] } },
      axes: [{ values: (u, vals) => vals.map((v) => rows[v]?.device_id ?? ""), rotate: -30, size: 70 }, {}],
      series: [{ label: "device" }, {
        label: "anomalous readings", stroke: "#d62728", fill: "rgba(214,39,40,.35)",
        paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false },
      }],
    }, [xs, rows.map((r) => r.anomaly_count)]);
    const body = rows.map((r) => `<tr><td><a href="/devices/${encodeURIComponent(r.device_id)}">${es.esc(r.device_id)}</a></td>
      <td class="num">${r.anomaly_count}</td><td class="num">${es.num(r.max_score, 3)}</td></tr>`);
    document.getElementById("worst-table").innerHTML = es.table(["device", "anomalous readings", "max score"], body, "worst");
  }

  async function draw() {
    const data = await es.get("/api/stats");
    rates("chart-site", data.site);
    rates("chart-device-type", data.device_type);
    worst(data.worst);
    const windows = data.site.ts.length;
    document.getElementById("stats-note").textContent = windows
      ? `${windows} fleet.stats windows; x: window end (local time)`
      : "no fleet.stats window yet (the cloud job emits one when a window closes)";
  }

  const redraw = es.throttle(() => draw().catch(console.error), 500);
  es.listen({ changed: (kinds) => { if (kinds.includes("stats")) redraw(); } });
  draw().catch(console.error);
})();
