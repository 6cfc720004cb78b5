// Shared helpers of the dashboard pages: JSON fetches, the push stream, tables, charts.
"use strict";
window.edgestreamCharts = {};  // chart id -> uPlot instance (tests read .data)

const es = {
  async get(path) {
    const resp = await fetch(path, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`${path}: ${resp.status} ${await resp.text()}`);
    return resp.json();
  },
  // Server-Sent Events: handlers.alert(row), handlers.changed(kinds)
  listen(handlers) {
    const source = new EventSource("/api/events");
    const badge = document.getElementById("live");
    source.addEventListener("hello", () => { badge.textContent = "live"; badge.className = "live on"; });
    source.onerror = () => { badge.textContent = "reconnecting"; badge.className = "live off"; };
    for (const [kind, fn] of Object.entries(handlers)) {
      source.addEventListener(kind, (e) => fn(JSON.parse(e.data)));
    }
    return source;
  },
  time(ms) { return ms ? new Date(ms).toISOString().slice(11, 19) : "-"; },
  num(v, digits = 0) { return v === null || v === undefined ? "-" : Number(v).toFixed(digits); },
  esc(v) {
    return String(v ?? "-").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  },
  table(headers, rows, id) {
    const head = headers.map((h) => `<th>${es.esc(h)}</th>`).join("");
    return `<table id="${id}"><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
  },
  palette: ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"],
  // A uPlot chart in element `id` (replaced when drawn again); returns the instance.
  chart(id, opts, data) {
    const el = document.getElementById(id);
    if (!el) return null;
    const old = window.edgestreamCharts[id];
    if (old) old.destroy();
    el.innerHTML = "";
    const width = Math.max(320, el.clientWidth - 16);
    const u = new uPlot({ width, height: 260, ...opts }, data, el);
    window.edgestreamCharts[id] = u;
    return u;
  },
  // Line series options for named columns.
  lines(names) {
    return names.map((name, i) => ({ label: name, stroke: es.palette[i % es.palette.length], width: 1.5, spanGaps: true }));
  },
  throttle(fn, ms) {
    let timer = null;
    return (...args) => { if (!timer) timer = setTimeout(() => { timer = null; fn(...args); }, ms); };
  },
};

document.querySelectorAll("header nav a").forEach((a) => {
  if (a.dataset.nav === document.body.dataset.page) a.classList.add("active");
});
