// The recovery console's progress page: polls /status once a second and updates the fields.
(function () {
  "use strict";
  var root = document.getElementById("recovery");
  if (!root) { return; }
  function size(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? Math.round(n) + " B" : n.toFixed(1) + " " + units[i];
  }
  function field(name, text) {
    var el = root.querySelector('[data-field="' + name + '"]');
    if (el && el.textContent !== text) { el.textContent = text; }
  }
  function render(s) {
    field("phase", s.phase);
    var badge = root.querySelector('[data-field="phase"]');
    if (badge) { badge.className = "status status-" + s.phase; }
    field("message", s.message);
    field("percent", s.percent.toFixed(1) + " %");
    document.getElementById("progress").value = s.percent;
    field("bytes", size(s.bytes_done) + " of " + size(s.bytes_total));
    field("speed", size(s.speed) + "/s");
    field("eta", s.eta === null ? "—" : String(s.eta));
    field("segments", s.segments_written + " of " + s.segments_total);
    field("pending", String(s.pending_delivery));
    document.getElementById("cancel-form").hidden = s.phase !== "restoring";
    var list = document.getElementById("events");
    while (list.children.length < s.events.length) {
      var e = s.events[list.children.length];
      var li = document.createElement("li");
      li.className = "event level-" + e.level;
      var t = document.createElement("span"); t.className = "ev-time"; t.textContent = e.time;
      var c = document.createElement("code"); c.className = "ev-code"; c.textContent = e.code;
      var m = document.createElement("span"); m.className = "ev-message"; m.textContent = e.message;
      li.append(t, " ", c, " ", m);
      list.appendChild(li);
    }
  }
  function poll() {
    fetch("/status", { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (s) {
      render(s);
      if (s.phase === "restoring" || s.pending_delivery > 0) { setTimeout(poll, 1000); }
    }).catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
