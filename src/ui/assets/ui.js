// mf viewer: "copy as curl", and the control center of a running replay (admin API at this
// origin; every change is sent as JSON, which the admin's cross-site rules require).
"use strict";

(function () {
  function $(id) { return document.getElementById(id); }

  // ---- copy as curl -------------------------------------------------------------------
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("[data-copy]");
    if (!btn) return;
    var src = $(btn.getAttribute("data-copy"));
    if (!src) return;
    var text = src.textContent;
    var done = function () { btn.textContent = "copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectAndCopy(src); done(); });
    } else {
      selectAndCopy(src);
      done();
    }
  });

  function selectAndCopy(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try { document.execCommand("copy"); } catch (e) { /* the text stays selected */ }
  }

  // ---- control center ----------------------------------------------------------------
  var control = $("control");
  if (!control) return;

  function say(text, bad) {
    var s = $("control-status");
    s.textContent = text;
    s.className = bad ? "status error" : "status";
  }

  function api(method, path, body, type) {
    var init = { method: method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = type || "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      return r.text().then(function (t) {
        var v = null;
        try { v = t ? JSON.parse(t) : null; } catch (e) { v = t; }
        if (!r.ok) throw new Error((v && v.error) || ("HTTP " + r.status));
        return v;
      });
    });
  }

  function showMode(mode) {
    var cards = control.querySelectorAll(".card");
    for (var i = 0; i < cards.length; i++) {
      cards[i].classList.toggle("active", cards[i].getAttribute("data-mode") === mode);
    }
    $("live-mode").textContent = mode;
    control.setAttribute("data-mode", mode);
  }

  function knobValue(field, raw) {
    raw = raw.trim();
    if (field === "error_status") {
      return raw.split(",").map(function (s) { return parseInt(s, 10); })
        .filter(function (n) { return !isNaN(n); });
    }
    var n = parseFloat(raw);
    return isNaN(n) ? raw : n;
  }

  control.addEventListener("click", function (ev) {
    var t = ev.target;
    var mode = t.getAttribute && t.getAttribute("data-apply-mode");
    if (mode) {
      var body = { mode: mode };
      var inputs = t.parentNode.querySelectorAll("input[data-field]");
      for (var i = 0; i < inputs.length; i++) {
        if (inputs[i].value.trim() !== "") {
          body[inputs[i].getAttribute("data-field")] =
            knobValue(inputs[i].getAttribute("data-field"), inputs[i].value);
        }
      }
      api("PUT", "/api/mode", body).then(function (s) {
        showMode(s.mode);
        say("Mode is now " + s.mode + ".");
      }, function (e) { say("Mode not changed: " + e.message, true); });
      return;
    }
    var preset = t.getAttribute && t.getAttribute("data-preset");
    if (preset) {
      api("POST", "/api/preset", { name: preset }).then(function (s) {
        showMode(s.mode);
        say("Preset " + preset + " applied (mode " + s.mode + ").");
      }, function (e) { say("Preset not applied: " + e.message, true); });
    }
  });

  $("apply-latency").addEventListener("click", function () {
    var body = { mode: $("latency-mode").value.trim() || "none" };
    if ($("latency-jitter").value.trim()) body.jitter = $("latency-jitter").value.trim();
    var bw = parseInt($("latency-bandwidth").value, 10);
    if (!isNaN(bw)) body.bandwidth = bw;
    api("PUT", "/api/latency", body).then(function () {
      say("Latency is now " + body.mode + ".");
    }, function (e) { say("Latency not changed: " + e.message, true); });
  });

  $("reset").addEventListener("click", function () {
    api("POST", "/api/reset", {}).then(function () { say("Counters reset."); },
      function (e) { say("Not reset: " + e.message, true); });
  });

  $("apply-rules").addEventListener("click", function () {
    var text = $("rules").value;
    var type = "application/json";
    try { JSON.parse(text); } catch (e) { type = "application/yaml"; }
    api("PUT", "/api/rules", text, type).then(function (rules) {
      $("rules").value = JSON.stringify(rules, null, 2);
      $("rules-status").textContent = " " + rules.length + " rules in force.";
    }, function (e) { $("rules-status").textContent = " Refused: " + e.message; });
  });

  function loadState() {
    api("GET", "/api/state").then(function (st) {
      var s = st.settings || {};
      showMode((s.scenario && s.scenario.mode) || "healthy");
      var lat = s.latency || {};
      $("latency-mode").value = lat.mode || "none";
      $("latency-jitter").value = lat.jitter || "";
      $("latency-bandwidth").value = lat.bandwidth || "";
      $("rules").value = JSON.stringify(s.rules || [], null, 2);
      var names = (st.builtin_presets || []).concat(Object.keys(s.presets || {}));
      var box = $("presets");
      box.textContent = "";
      names.forEach(function (n) {
        var b = document.createElement("button");
        b.type = "button";
        b.setAttribute("data-preset", n);
        b.textContent = n;
        box.appendChild(b);
      });
      say("Connected: seed " + st.seed + ".");
    }, function (e) { say("Cannot read the replay's state: " + e.message, true); });
  }

  // ---- live panels (SVG drawn here from the event stream) ----------------------------
  var SVG = "http://www.w3.org/2000/svg";
  var history = { rate: [], errors: [] };

  function el(name, attrs, text) {
    var n = document.createElementNS(SVG, name);
    for (var k in attrs) n.setAttribute(k, attrs[k]);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function spark(svg, values, color) {
    svg.textContent = "";
    var max = Math.max.apply(null, values.concat([1]));
    var pts = values.map(function (v, i) {
      var x = values.length > 1 ? (i / (values.length - 1)) * 296 + 2 : 2;
      return x.toFixed(1) + "," + (58 - (v / max) * 54).toFixed(1);
    });
    svg.appendChild(el("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": "2" }));
    svg.appendChild(el("text", { x: "4", y: "12", "font-size": "10" }, "max " + max.toFixed(1)));
  }

  function histogram(svg, buckets) {
    svg.textContent = "";
    var max = Math.max.apply(null, buckets.map(function (b) { return b.count; }).concat([1]));
    var w = 640 / buckets.length;
    buckets.forEach(function (b, i) {
      var h = (b.count / max) * 90;
      var bar = el("rect", { x: (i * w + 2).toFixed(1), y: (110 - h).toFixed(1),
        width: (w - 4).toFixed(1), height: h.toFixed(1), fill: "#6a9fd8", "class": "bucket" });
      bar.appendChild(el("title", {}, b.count + " requests"));
      svg.appendChild(bar);
      var label = b.le_ms === null ? "more" : "≤" + (b.le_ms >= 1000 ? (b.le_ms / 1000) + "s" : b.le_ms + "ms");
      svg.appendChild(el("text", { x: (i * w + w / 2).toFixed(1), y: "124", "font-size": "9",
        "text-anchor": "middle" }, label));
      if (b.count > 0) {
        svg.appendChild(el("text", { x: (i * w + w / 2).toFixed(1), y: Math.max(10, 106 - h).toFixed(1),
          "font-size": "9", "text-anchor": "middle" }, String(b.count)));
      }
    });
  }

  function live(snap) {
    history.rate.push(snap.request_rate);
    history.errors.push(snap.error_rate_per_s + snap.fault_rate);
    if (history.rate.length > 120) { history.rate.shift(); history.errors.shift(); }
    $("live-rate").textContent = snap.request_rate.toFixed(1);
    $("live-errors").textContent = snap.error_rate_per_s.toFixed(1) + " errors, " +
      snap.fault_rate.toFixed(1) + " faults";
    $("live-ws").textContent = String(snap.ws_active);
    $("live-totals").textContent = snap.requests + " requests (" + snap.matched + " matched, " +
      snap.unmatched + " unmatched), " + snap.errors + " errors, " + snap.faults + " faults";
    showMode(snap.mode);
    spark($("spark-rate"), history.rate, "#3b6fb6");
    spark($("spark-errors"), history.errors, "#b33");
    histogram($("latency-histogram"), snap.latency_buckets);
    control.setAttribute("data-live-events", String((+control.getAttribute("data-live-events") || 0) + 1));
  }

  loadState();
  var source = new EventSource("/api/live");
  source.onmessage = function (ev) {
    try { live(JSON.parse(ev.data)); } catch (e) { say("Bad live event: " + e.message, true); }
  };
  source.onerror = function () { say("Live feed interrupted; retrying…", true); };
})();
