// tryd dashboard: live log updates. Everything else works without
// JavaScript. Log text is added with textContent only, never as HTML.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var state = document.getElementById("logstate");
  var log = document.getElementById("log");
  if (!state || !log || !window.EventSource) return;
  var status = document.getElementById("livestatus");
  var attempt = state.dataset.attempt;
  var line = parseInt(state.dataset.line, 10) || 0;
  var open = state.dataset.open === "true";
  var url = "/logs/" + encodeURIComponent(attempt) + "/events?offset=" + encodeURIComponent(state.dataset.offset);
  var es = new EventSource(url);
  if (status) status.textContent = "following live…";

  function startLine() {
    line++;
    var a = document.createElement("a");
    a.className = "n";
    a.id = "L" + line;
    a.href = "#L" + line;
    a.textContent = String(line);
    log.appendChild(a);
    open = true;
  }

  es.onmessage = function (ev) {
    var msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    var frag = document.createDocumentFragment();
    var target = log;
    log = frag;
    (msg.ops || []).forEach(function (op) {
      if (op.nl) {
        if (!open) startLine();
        log.appendChild(document.createTextNode("\n"));
        open = false;
        return;
      }
      if (!open) startLine();
      if (op.c) {
        var s = document.createElement("span");
        s.className = op.c;
        s.textContent = op.t;
        log.appendChild(s);
      } else {
        log.appendChild(document.createTextNode(op.t));
      }
    });
    log = target;
    log.appendChild(frag);
    state.dataset.offset = ev.lastEventId;
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  };
  es.addEventListener("end", function () {
    es.close();
    if (status) status.textContent = "finished";
    document.body.dataset.logEnded = "true";
  });
  es.onerror = function () {
    if (es.readyState === EventSource.CLOSED && status) status.textContent = "live updates stopped";
  };
});
