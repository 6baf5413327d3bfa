// redisq dashboard: confirmations, select-all, and the live overview (counts, rates, chart).
// Plain JS, no build step, nothing loaded from elsewhere.
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  var button = event.submitter;
  var text = (button && button.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
  if (text && !window.confirm(text)) {
    event.preventDefault();
  }
});

document.addEventListener("change", function (event) {
  var box = event.target;
  if (box.hasAttribute && box.hasAttribute("data-select-all")) {
    var boxes = box.form.querySelectorAll('input[type="checkbox"][name="ids"]');
    for (var i = 0; i < boxes.length; i++) boxes[i].checked = box.checked;
  }
});

(function live() {
  var table = document.getElementById("queues");
  if (!table) return;
  var url = table.getAttribute("data-live");
  var every = parseInt(table.getAttribute("data-interval"), 10) || 2000;
  var canvas = document.getElementById("throughput");
  var status = document.getElementById("live-status");
  var last = null;            // the previous reply: {now_ms, rows}
  var samples = [];           // [{t, enq, done}] over the last hour
  var HOUR = 3600 * 1000;

  function fmt(n) { return n.toLocaleString("en-US"); }
  function rate(n) { return n < 10 ? n.toFixed(1) : fmt(Math.round(n)); }

  function draw() {
    if (!canvas || !canvas.getContext) return;
    var ctx = canvas.getContext("2d");
    var w = canvas.width, h = canvas.height, pad = 30;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#ccd"; ctx.fillStyle = "#667"; ctx.font = "11px sans-serif";
    ctx.beginPath(); ctx.moveTo(pad, 4); ctx.lineTo(pad, h - pad); ctx.lineTo(w - 4, h - pad); ctx.stroke();
    if (samples.length < 2) { ctx.fillText("collecting…", pad + 8, h / 2); return; }
    if (samples.length && samples[samples.length - 1].t < samples[0].t) samples.sort(function (x, y) { return x.t - y.t; });
    var t1 = samples[samples.length - 1].t, t0 = Math.min(samples[0].t, t1 - 60000);
    var top = 1;
    samples.forEach(function (s) { top = Math.max(top, s.enq, s.done); });
    ctx.fillText(rate(top) + "/s", 2, 12);
    ctx.fillText(Math.round((t1 - t0) / 60000) + " min ago", pad + 2, h - pad + 14);
    ctx.fillText("now", w - 26, h - pad + 14);
    function line(key, colour) {
      ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.beginPath();
      samples.forEach(function (s, i) {
        var x = pad + (w - pad - 4) * (s.t - t0) / (t1 - t0);
        var y = (h - pad) - (h - pad - 8) * s[key] / top;
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      });
      ctx.stroke();
    }
    line("enq", "#2a6fdb"); line("done", "#1a9a4b");
  }

  // The last hour from the per-minute samples in Redis (shared by every dashboard), as
  // rates between consecutive minutes, summed over the queues of this page.
  function seed(series, names) {
    for (var i = 1; i < series.length; i++) {
      var a = series[i - 1], b = series[i], dt = (b.t - a.t) / 1000;
      if (dt <= 0) continue;
      var enq = 0, done = 0;
      names.forEach(function (q) {
        if (a.q[q] && b.q[q]) {
          enq += Math.max(0, b.q[q][0] - a.q[q][0]);
          done += Math.max(0, b.q[q][1] - a.q[q][1]);
        }
      });
      samples.push({ t: b.t, enq: enq / dt, done: done / dt });
    }
  }

  function apply(data) {
    var byName = {};
    data.rows.forEach(function (r) { byName[r.name] = r; });
    if (!last && data.series && data.series.length) seed(data.series, Object.keys(byName));
    var sumEnq = 0, sumDone = 0, dt = last ? (data.now_ms - last.now_ms) / 1000 : 0;
    var rows = table.querySelectorAll("tr[data-queue]");
    for (var i = 0; i < rows.length; i++) {
      var tr = rows[i], r = byName[tr.getAttribute("data-queue")];
      if (!r) continue;
      var cells = tr.querySelectorAll("[data-count]");
      for (var j = 0; j < cells.length; j++) {
        var n = r.counts[cells[j].getAttribute("data-count")];
        cells[j].textContent = fmt(n || 0);
      }
      var prev = last && last.byName[r.name];
      if (prev && dt > 0) {
        var enq = Math.max(0, (r.totals.enqueued - prev.totals.enqueued) / dt);
        var done = Math.max(0, (r.totals.completed - prev.totals.completed) / dt);
        sumEnq += enq; sumDone += done;
        tr.querySelector('[data-rate="enqueued"]').textContent = rate(enq);
        tr.querySelector('[data-rate="completed"]').textContent = rate(done);
      }
    }
    if (last && dt > 0) {
      samples.push({ t: data.now_ms, enq: sumEnq, done: sumDone });
      while (samples.length && samples[0].t < data.now_ms - HOUR) samples.shift();
    }
    last = { now_ms: data.now_ms, byName: byName };
    window.redisqSamples = samples.length;  // for tests: how many points the chart has
    draw();
  }

  function poll() {
    fetch(last ? url : url + "&series=1", { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) { apply(data); if (status) status.textContent = "· live"; })
      .catch(function (e) { if (status) status.textContent = "· refresh failed: " + e.message; })
      .then(function () { window.setTimeout(poll, every); });
  }
  draw();
  poll();
})();
