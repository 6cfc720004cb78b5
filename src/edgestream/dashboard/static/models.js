// Model versions, retrain requests, promotions and rollbacks on one timeline.
"use strict";
(() => {
  const content = document.getElementById("content");
  content.innerHTML = `<div class="chart" id="chart-timeline"></div>
    <h2>Live versions (per gateway)</h2><div id="live-models"></div>
    <h2>Events</h2><div id="model-events"></div>`;

  function timeline(events) {
    const lanes = [...new Set(events.map((e) => e.lane))].sort();
    const kinds = [...new Set(events.map((e) => e.kind))].sort();
    const xs = [...new Set(events.map((e) => e.at / 1000))].sort((a, b) => a - b);
    const columns = kinds.map((k) => {
      const at = new Map(events.filter((e) => e.kind === k).map((e) => [e.at / 1000, lanes.indexOf(e.lane)]));
      return xs.map((x) => at.has(x) ? at.get(x) : null);
    });
    es.chart("chart-timeline", {
      height: Math.max(200, 60 + lanes.length * 34),
      scales: { y: { range: [-0.7, Math.max(lanes.length - 0.3, 0.3)] } },
      axes: [{}, { values: (u, vals) => vals.map((v) => Number.isInteger(v) ? (lanes[v] ?? "") : ""), size: 140, incrs: [1] }],
      series: [{}, ...kinds.map((k, i) => ({
        label: k, stroke: es.palette[i % es.palette.length], paths: () => null,
        points: { show: true, size: 11, fill: es.palette[i % es.palette.length] },
      }))],
    }, [xs, ...columns]);
  }

  async function draw() {
    const data = await es.get("/api/models");
    timeline(data.events);
    const live = Object.entries(data.live).map(([gw, m]) => `<tr><td>${es.esc(gw)}</td><td>${
      es.esc(Object.entries(m).map(([t, v]) => `${t}=${v}`).join(" "))}</td></tr>`);
    document.getElementById("live-models").innerHTML = es.table(["gateway", "live models"], live, "live");
    const rows = data.events.slice().reverse().map((e) => `<tr><td>${es.time(e.at)}</td><td>${es.esc(e.lane)}</td>
      <td>${es.esc(e.kind)}</td><td>${es.esc(e.label)}</td><td>${es.esc(e.detail)}</td></tr>`);
    document.getElementById("model-events").innerHTML =
      es.table(["time (UTC)", "lane", "event", "what", "detail"], rows, "events");
  }

  const redraw = es.throttle(() => draw().catch(console.error), 500);
  es.listen({ changed: (kinds) => { if (kinds.some((k) => ["model", "retrain", "rollout"].includes(k))) redraw(); } });
  draw().catch(console.error);
})();
