// modelpack registry pages: copy buttons, and live updates from GET /v1/events/stream (Server-Sent Events).
// The pages work without this script; without the stream (404, or no EventSource) they just do not update.
(function () {
  "use strict";
  var EVENT_TYPES = [
    "pack.published", "pack.received", "pack.available", "pack.validated", "pack.rejected", "pack.curated",
    "pack.degraded", "pack.uncurated", "pointer.moved", "replication.satisfied", "replication.lost",
    "node.up", "node.down", "key.registered", "key.revoked", "policy.changed", "pin.status"
  ];
  var MAX_ROWS = 50;

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function setUpCopyButtons() {
    var buttons = document.querySelectorAll("button.copy[data-copy]");
    for (var i = 0; i < buttons.length; i++) { buttons[i].hidden = false; }
    document.addEventListener("click", function (ev) {
      var button = ev.target.closest ? ev.target.closest("button.copy[data-copy]") : null;
      if (!button) { return; }
      copyText(button.getAttribute("data-copy")).then(function () {
        button.textContent = "Copied";
        button.classList.add("done");
      }, function () {
        button.textContent = "Copy failed";
      }).then(function () {
        setTimeout(function () { button.textContent = "Copy"; button.classList.remove("done"); }, 2000);
      });
    });
  }

  function cell(tag, text, className) {
    var el = document.createElement(tag);
    el.textContent = text == null ? "" : String(text);
    if (className) { el.className = className; }
    return el;
  }

  function stateClass(state) {
    return "badge state-" + String(state).replace(/[^a-z0-9_]/g, "_");
  }

  function badge(state) {
    var el = cell("span", state);
    el.className = stateClass(state);
    return el;
  }

  // As the server writes times: "2024-06-11 12:00:05 UTC".
  function when(text) {
    var at = text ? new Date(text) : null;
    var shown = at && !isNaN(at.getTime()) ? at.toISOString().slice(0, 19).replace("T", " ") + " UTC" : text;
    var t = cell("time", shown);
    if (text) { t.setAttribute("datetime", text); }
    return t;
  }

  // "ns/model": events may name the model in full or give the namespace apart.
  function modelName(event) {
    if (!event.model) { return null; }
    var model = String(event.model);
    return model.indexOf("/") >= 0 ? model : (event.namespace || "") + "/" + model;
  }

  function prepend(list, node) {
    list.insertBefore(node, list.firstChild);
    while (list.children.length > MAX_ROWS) { list.removeChild(list.lastChild); }
  }

  // The pack page: its state badge and history follow the pack's events.
  function packUpdater(article) {
    var cid = article.getAttribute("data-pack");
    var name = article.getAttribute("data-namespace") + "/" + article.getAttribute("data-model");
    var stateBadge = document.getElementById("pack-state");
    var rows = document.getElementById("history-rows");
    return function (event) {
      var model = modelName(event);
      if (event.pack !== cid || (model !== null && model !== name)) { return; }
      var payload = event.payload || {};
      if (typeof payload.state !== "string" || !stateBadge) { return; }
      var previous = stateBadge.textContent;
      if (previous === payload.state) { return; }
      stateBadge.textContent = payload.state;
      stateBadge.className = stateClass(payload.state);
      var why = document.getElementById("pack-reason");
      if (why) { why.textContent = payload.reason || "-"; }
      var status = document.getElementById("live-status");
      if (status) { status.textContent = "live (reload for the new validation report, replicas and pointers)"; }
      if (rows) {
        var tr = document.createElement("tr");
        var at = cell("td", "");
        at.appendChild(when(event.created_at));
        var to = cell("td", "");
        to.appendChild(badge(payload.state));
        tr.appendChild(at);
        tr.appendChild(cell("td", typeof payload.from === "string" ? payload.from : previous));
        tr.appendChild(to);
        tr.appendChild(cell("td", event.actor || payload.actor || "-"));
        tr.appendChild(cell("td", payload.reason || "", "reason"));
        prepend(rows, tr);
      }
    };
  }

  // The recent events panel: one row per event, newest first.
  function panelUpdater(list) {
    return function (event) {
      var li = document.createElement("li");
      li.appendChild(when(event.created_at));
      li.appendChild(cell("span", event.type, "type"));
      var model = modelName(event);
      if (model) {
        var parts = model.split("/");
        var a = cell("a", model);
        a.href = "/ui/models/" + encodeURIComponent(parts[0]) + "/" + encodeURIComponent(parts.slice(1).join("/"));
        li.appendChild(a);
      } else if (event.namespace) { li.appendChild(cell("span", event.namespace)); }
      var payload = event.payload || {};
      if (typeof payload.node === "string") {
        var n = cell("a", "node " + payload.node);
        n.href = "/ui/nodes/" + encodeURIComponent(payload.node);
        li.appendChild(n);
      }
      if (event.pack) {
        var p = cell("a", String(event.pack).slice(0, 12) + "…");
        p.href = "/ui/packs/" + encodeURIComponent(event.pack) + (model ? "?model=" + encodeURIComponent(model) : "");
        p.title = event.pack;
        li.appendChild(p);
      }
      if (typeof payload.state === "string") { li.appendChild(badge(payload.state)); }
      if (payload.reason) { li.appendChild(cell("span", payload.reason, "reason muted")); }
      prepend(list, li);
    };
  }

  function listen() {
    var article = document.querySelector("article[data-pack]");
    var list = document.getElementById("event-list");
    var status = document.getElementById("live-status");
    var handlers = [];
    if (article) { handlers.push(packUpdater(article)); }
    if (list) { handlers.push(panelUpdater(list)); }
    if (!handlers.length || !window.EventSource) { return; }
    // Subscribe after the newest event the page was rendered with: nothing committed meanwhile is missed.
    var marked = document.querySelector("[data-events-after]");
    var after = marked ? marked.getAttribute("data-events-after") : "";
    var source = new EventSource("/v1/events/stream" + (/^[0-9]+$/.test(after) ? "?after=" + after : ""));
    function say(text) { if (status) { status.textContent = text; } }
    function onEvent(message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (!event || typeof event !== "object") { return; }
      if (!event.type && message.type !== "message") { event.type = message.type; }
      for (var i = 0; i < handlers.length; i++) { handlers[i](event); }
    }
    source.onopen = function () { say(article ? "live" : "Live: new events appear at the top."); };
    source.onerror = function () {
      // EventSource retries by itself after a dropped connection; a 404 or a non-stream answer closes it.
      say(source.readyState === EventSource.CLOSED ? "(live updates unavailable: reload to see changes)"
        : "(reconnecting…)");
    };
    source.onmessage = onEvent;
    for (var i = 0; i < EVENT_TYPES.length; i++) { source.addEventListener(EVENT_TYPES[i], onEvent); }
    window.addEventListener("pagehide", function () { source.close(); });
  }

  document.documentElement.classList.add("js");
  setUpCopyButtons();
  listen();
}());
