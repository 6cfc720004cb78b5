// Live alerts: filters (site, device, min severity); new alerts are pushed (SSE).
"use strict";
(() => {
  const content = document.getElementById("content");
  const RANK = { info: 0, warning: 1, critical: 2 };
  const filters = { site: "", device: "", min_severity: "" };
  let choicesShown = false;

  function matches(a) {
    if (filters.site && a.site !== filters.site) return false;
    if (filters.device && a.device_id !== filters.device) return false;
    if (filters.min_severity && (RANK[a.severity] ?? 1) < RANK[filters.min_severity]) return false;
    return true;
  }

  function row(a, fresh) {
    const seen = fresh ? ` data-seen-ms="${Date.now()}" class="fresh"` : "";
    return `<tr data-alert-id="${es.esc(a.alert_id)}"${seen}>
      <td>${es.time(a.ts)}</td><td class="sev-${es.esc(a.severity)}">${es.esc(a.severity)}</td>
      <td>${es.esc(a.status)}</td><td>${es.esc(a.site)}</td>
      <td><a href="/devices/${encodeURIComponent(a.device_id)}">${es.esc(a.device_id)}</a></td>
      <td>${es.esc(a.device_type)}</td><td class="num">${es.num(a.score, 3)}</td>
      <td>${es.esc(a.rule)}</td><td>${es.esc(a.model_version)}</td><td>${es.esc(a.gateway_id)}</td></tr>`;
  }

  function select(name, options, label) {
    const opts = [`<option value="">any ${label}</option>`].concat(
      options.map((o) => `<option value="${es.esc(o)}">${es.esc(o)}</option>`));
    return `<label>${label} <select id="f-${name}" data-filter="${name}">${opts.join("")}</select></label>`;
  }

  async function draw() {
    const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    const data = await es.get(`/api/alerts?${q}`);
    if (!choicesShown) {
      content.innerHTML = `<div class="filters">${select("site", data.sites, "site")}
        ${select("device", data.devices, "device")}
        ${select("min_severity", ["info", "warning", "critical"], "severity ≥")}
        <span class="muted" id="alert-count"></span></div><div id="alerts-table"></div>`;
      content.querySelectorAll("select").forEach((s) => s.addEventListener("change", () => {
        filters[s.dataset.filter] = s.value; draw().catch(console.error);
      }));
      choicesShown = true;
    }
    const headers = ["time (UTC)", "severity", "status", "site", "device", "type", "score", "rule", "model", "gateway"];
    document.getElementById("alerts-table").innerHTML = es.table(headers, data.alerts.map((a) => row(a, false)), "alerts");
    document.getElementById("alert-count").textContent = `${data.alerts.length} shown`;
  }

  es.listen({
    alert(a) {
      if (!matches(a)) return;
      const body = document.querySelector("#alerts tbody");
      if (body) body.insertAdjacentHTML("afterbegin", row(a, true));
    },
  });
  draw().catch(console.error);
})();
