// tryd dashboard: live log updates. Everything else works without
// JavaScript. Log text is added with textContent only, never as HTML.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  followBuild();
  followLog();
});

// followBuild updates a running build's job states; when the build
// finishes the page is loaded again for the final timeline.
function followBuild() {
  var state = document.getElementById("buildstate");
  if (!state || state.dataset.state !== "running" || !window.EventSource) return;
  var es = new EventSource("/builds/" + encodeURIComponent(state.dataset.build) + "/events");
  es.onmessage = function (ev) {
    var msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (!msg.job_id || !msg.state) return;
    var row = document.getElementById("job-" + msg.job_id);
    if (!row) return;
    var st = row.querySelector(".jstate .st");
    if (st) {
      st.textContent = msg.state;
      st.className = "st st-" + msg.state;
    }
    if (msg.worker) {
      var w = row.querySelector(".jworker");
      if (w) w.textContent = msg.worker;
    }
  };
  es.addEventListener("end", function () {
    es.close();
    window.location.reload();
  });
}

function followLog() {
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
}
