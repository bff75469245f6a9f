// Live tail: an EventSource on /tail/stream?q=..., the filter runs on the server.
// Pause keeps the stream open and buffers lines (count shown); Resume shows them in order.
// The server closes each stream after ~25 s; EventSource reconnects and sends Last-Event-ID,
// and lines already shown are skipped by id.
"use strict";
(function () {
  var box = document.getElementById("tail");
  if (!box) return;
  var statusEl = document.getElementById("tail-status"), pauseBtn = document.getElementById("pause");
  var q = box.getAttribute("data-q") || "", paused = false, buffer = [], seen = new Set(), seenOrder = [], shown = 0;
  var MAX_LINES = 2000;

  function setStatus(text) { statusEl.textContent = text; }
  function link(cls, href, text, title) {
    var a = document.createElement("a");
    a.className = "chip " + cls; a.href = href; a.textContent = text; a.title = title;
    return a;
  }
  function render(e) {
    var row = document.createElement("div");
    row.className = "line fresh" + ((e.kind === "error" || e.level === "error" || e.level === "critical") ? " is-error" : "");
    row.setAttribute("data-id", e.id);
    var t = document.createElement("span"); t.className = "t"; t.textContent = (e.ts || "").slice(11, 23); row.appendChild(t);
    var lvl = document.createElement("span"); lvl.className = "lvl lvl-" + (e.level || "info"); lvl.textContent = (e.level || "info").slice(0, 4); row.appendChild(lvl);
    var s = document.createElement("span"); s.className = "s"; s.textContent = (e.host || "–") + " · " + (e.service || "–"); row.appendChild(s);
    var m = document.createElement("span"); m.className = "m";
    m.textContent = e.kind === "event" ? "event " + (e.name || "") : (e.message || "");
    row.appendChild(m);
    if (e.request_id) row.appendChild(link("chip-request_id", "/trace/" + encodeURIComponent(e.request_id), e.request_id, "request_id"));
    if (e.user_id) row.appendChild(link("chip-user_id", "/users/" + encodeURIComponent(e.user_id), e.user_id, "user_id"));
    return row;
  }
  function show(lines) {
    var empty = document.getElementById("tail-empty");
    if (empty && lines.length) empty.remove();
    var atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 30;
    lines.forEach(function (e) { box.appendChild(render(e)); shown++; });
    while (box.childElementCount > MAX_LINES) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }
  function accept(lines) {
    var fresh = lines.filter(function (e) {
      if (seen.has(e.id)) return false;
      seen.add(e.id); seenOrder.push(e.id);
      if (seenOrder.length > 10000) seen.delete(seenOrder.shift());
      return true;
    });
    if (paused) { buffer = buffer.concat(fresh); setStatus("Paused — " + buffer.length + " new line(s) waiting"); }
    else { show(fresh); setStatus("Live — " + shown + " line(s)" + (q ? " matching the filter" : "")); }
  }
  var es = new EventSource("/tail/stream?q=" + encodeURIComponent(q));
  es.addEventListener("open", function () { if (!paused) setStatus("Live — " + shown + " line(s)"); });
  es.addEventListener("lines", function (ev) { accept(JSON.parse(ev.data)); });
  es.addEventListener("problem", function (ev) { setStatus(JSON.parse(ev.data).message); });
  es.addEventListener("error", function () { setStatus(paused ? "Paused (reconnecting…)" : "Reconnecting…"); });
  pauseBtn.addEventListener("click", function () {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    if (!paused) { show(buffer); buffer = []; setStatus("Live — " + shown + " line(s)"); }
    else setStatus("Paused — 0 new line(s) waiting");
  });
  document.getElementById("clear").addEventListener("click", function () {
    box.querySelectorAll(".line").forEach(function (n) { n.remove(); }); shown = 0;
  });
})();
