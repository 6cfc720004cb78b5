// Fleet overview: one row per gateway, from what reached the cloud.
"use strict";
(() => {
  const content = document.getElementById("content");

  function rollout(states) {
    const parts = Object.entries(states).map(([type, s]) => `${type}: ${s.event} ${s.version ?? ""}`);
    return parts.join("<br>") || "-";
  }

  function row(g) {
    const models = Object.entries(g.models).map(([t, v]) => `${t}=${v}`).join(" ") || "-";
    return `<tr data-gateway="${es.esc(g.gateway)}">
      <td>${es.esc(g.gateway)}</td><td class="${g.status}">${g.status}</td>
      <td class="num">${es.num(g.heard_s, 1)} s</td><td class="num">${es.num(g.lag_s, 1)}</td>
      <td class="num">${es.num(g.outbox_depth)}</td><td class="num">${es.num(g.outbox_age_s, 1)}</td>
      <td class="num">${es.num(g.report_age_s, 0)}</td><td class="num">${es.num(g.dropped)}</td>
      <td>${es.esc(models)}</td><td>${rollout(g.rollout)}</td>
      <td>${es.esc(g.sites.join(", "))}</td><td class="num">${g.alerts}</td></tr>`;
  }

  async function draw() {
    const data = await es.get("/api/overview");
    const headers = ["gateway", "status", "last heard", "lag (s)", "outbox depth", "outbox age (s)",
      "report age (s)", "dropped", "live models", "rollout", "sites", "alerts"];
    const counts = Object.entries(data.counts).map(([k, v]) => `${k} ${v}`).join(" · ");
    const error = data.error ? `<p class="down">${es.esc(data.error)}</p>` : "";
    content.innerHTML = error + es.table(headers, data.gateways.map(row), "gateways") +
      `<p class="muted">lag: now - newest event time received from the gateway (summaries, alerts);
      outbox: the gateway's latest forwarder report (report age). Records read: ${es.esc(counts || "none yet")}</p>`;
  }

  const redraw = es.throttle(() => draw().catch(console.error), 500);
  es.listen({ changed: redraw, alert: redraw });
  draw().catch(console.error);
  setInterval(redraw, 5000);
})();
