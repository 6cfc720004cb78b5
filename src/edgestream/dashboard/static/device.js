// A device: its recent sampled readings (fleet.samples) and window anomaly scores
// (fleet.summaries), its alerts marked; without a device in the path: the list of devices.
"use strict";
(() => {
  const content = document.getElementById("content");
  const id = decodeURIComponent(location.pathname.split("/devices/")[1] || "");

  // Red vertical lines at the alerts' times.
  function alertMarks(times) {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "rgba(198,40,40,.8)";
          ctx.lineWidth = 2;
          for (const t of times) {
            const x = u.valToPos(t, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
  }

  async function list() {
    const data = await es.get("/api/devices");
    const rows = data.devices.map((d) => `<tr><td><a href="/devices/${encodeURIComponent(d)}">${es.esc(d)}</a></td></tr>`);
    content.innerHTML = es.table(["device"], rows, "devices") ||
      "<p>no device seen yet</p>";
  }

  function scoresChart(dev, alertTimes) {
    // window max scores as a line; alert scores as points on their own series
    const xs = [...new Set([...dev.scores.map((p) => p[0] / 1000), ...dev.alerts.map((a) => a.ts / 1000)])].sort((a, b) => a - b);
    const win = new Map(dev.scores.map((p) => [p[0] / 1000, p[1]]));
    const al = new Map(dev.alerts.map((a) => [a.ts / 1000, a.score]));
    es.chart("chart-scores", {
      plugins: [alertMarks(alertTimes)],
      series: [{}, { label: "window max score", stroke: "#1f77b4", width: 1.5, spanGaps: true },
        { label: "alert score", stroke: "#c62828", paths: () => null, points: { show: true, size: 9, fill: "#c62828" } }],
    }, [xs, xs.map((x) => win.get(x) ?? null), xs.map((x) => al.get(x) ?? null)]);
  }

  async function show() {
    const { device: dev } = await es.get(`/api/devices/${encodeURIComponent(id)}`);
    document.querySelector("h1").textContent = `Device ${dev.device}`;
    if (!document.getElementById("chart-readings")) {
      content.innerHTML = `<p class="muted" id="device-meta"></p>
        <h2>Sampled readings</h2><div class="chart" id="chart-readings"></div>
        <h2>Anomaly scores</h2><div class="chart" id="chart-scores"></div>
        <h2>Alerts</h2><div id="device-alerts"></div>`;
    }
    document.getElementById("device-meta").textContent =
      `${dev.device_type} at ${dev.site}, gateway ${dev.gateway}; ${dev.ts.length} sampled readings, ` +
      `${dev.scores.length} windows, ${dev.alerts.length} alerts (red lines)`;
    const alertTimes = dev.alerts.map((a) => a.ts / 1000);
    const names = Object.keys(dev.channels);
    es.chart("chart-readings", { plugins: [alertMarks(alertTimes)], series: [{}, ...es.lines(names)] },
      [dev.ts.map((t) => t / 1000), ...names.map((n) => dev.channels[n])]);
    scoresChart(dev, alertTimes);
    const rows = dev.alerts.slice().reverse().map((a) => `<tr><td>${es.time(a.ts)}</td>
      <td class="sev-${es.esc(a.severity)}">${es.esc(a.severity)}</td><td>${es.esc(a.status)}</td>
      <td class="num">${es.num(a.score, 3)}</td><td>${es.esc(a.rule)}</td><td>${es.esc(a.model_version)}</td></tr>`);
    document.getElementById("device-alerts").innerHTML =
      es.table(["time (UTC)", "severity", "status", "score", "rule", "model"], rows, "device-alerts-table");
  }

  if (!id) {
    list().catch(console.error);
    return;
  }
  const redraw = es.throttle(() => show().catch(console.error), 1000);
  es.listen({
    alert: (a) => { if (a.device_id === id) redraw(); },
    changed: (kinds) => { if (kinds.includes("sample") || kinds.includes("summary")) redraw(); },
  });
  show().catch(console.error);
})();
