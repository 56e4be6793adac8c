// quota-dash: the events page goes live. The table's data-stream is a
// Server-Sent Events URL; each message is one event's JSON, shown as a new
// row on top. Event fields come from clients (paths, ids, META), so rows are
// built with textContent only, never as HTML. "Older events…" loads the
// page of the 100 before the oldest shown (the dashboard's own HTML) below
// the rows. A feed that catches up past events the log no longer has says
// so (its "gap" message).
"use strict";

(() => {
  const table = document.getElementById("events");
  if (!table) return;
  const body = table.tBodies[0];
  let maxRows = 500;

  // Older events, below the rows; the page works without it (a link).
  const older = document.getElementById("older-events");
  if (older) {
    older.addEventListener("click", async (event) => {
      const link = event.target instanceof Element ? event.target.closest("a#older-link") : null;
      if (!link || link.dataset.loading) return;
      event.preventDefault();
      link.dataset.loading = "1";
      link.textContent = "loading…";
      try {
        const r = await fetch(link.href, { headers: { "Accept": "text/html" } });
        if (!r.ok) throw new Error("the dashboard answered " + r.status);
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        const rows = doc.querySelectorAll("#events tbody tr");
        for (const tr of rows) body.appendChild(document.importNode(tr, true));
        maxRows += rows.length;
        const next = doc.getElementById("older-events");
        older.replaceChildren(...(next ? Array.from(next.childNodes, (n) => document.importNode(n, true)) : []));
      } catch (e) {
        delete link.dataset.loading;
        link.textContent = "Older events… (" + e.message + ": try again)";
      }
    });
  }

  if (!table.dataset.stream || !window.EventSource) return;
  const all = table.dataset.tree === "all";
  const status = document.getElementById("live-status");
  const empty = document.getElementById("events-empty");
  // Same order and wording as events.rs's DETAILS.
  const DETAILS = ["periods", "rolled_over", "remaining", "low", "grant", "amount", "expires_at",
    "rule", "service", "model", "id", "amounts", "meta"];
  const CLASSES = { warning: "status-warning", over: "status-over", disallowed: "status-over",
    low: "status-critical", expired: "status-critical", rollover: "status-healthy" };
  // The newest seq shown, per tree: a message at or below it is not shown twice.
  const seen = new Map();
  for (const tr of body.rows) {
    const s = Number(tr.dataset.seq);
    if (!all && s > (seen.get("") || 0)) seen.set("", s);
  }

  const say = (state, text) => {
    status.className = "live " + state;
    status.querySelector(".text").textContent = text;
  };

  const utc = (ms) => {
    const d = new Date(Number(ms));
    return isNaN(d) ? "" : d.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  };

  const str = (v) => (v === null || v === undefined ? "" : String(v));

  const detail = (name, v) => {
    if (v === null || v === undefined) return null;
    if (Array.isArray(v)) {
      // META from the log: flat pairs in the order given.
      const pairs = [];
      for (let i = 0; i < v.length; i += 2) pairs.push(str(v[i]) + " " + str(v[i + 1]));
      return pairs.join(", ");
    }
    if (typeof v === "object") return Object.entries(v).map(([k, x]) => k + " " + str(x)).join(", ");
    if (name === "expires_at" && typeof v === "number") return v === 0 ? "period end" : utc(v);
    return str(v);
  };

  const cell = (tr, text, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  };

  const show = (ev) => {
    const tree = str(ev.tree);
    const key = all ? tree : "";
    const seq = Number(ev.seq);
    if (seen.has(key) && seq <= seen.get(key)) return false;
    seen.set(key, seq);
    const tr = document.createElement("tr");
    tr.className = "fresh";
    tr.dataset.seq = str(ev.seq);
    if (all) {
      const td = document.createElement("td");
      const a = document.createElement("a");
      // As web::tree_url: a key of dots only, or starting with "~", gets a "~".
      const segment = /^(\.+|~.*)$/.test(tree) ? "~" + tree : tree;
      a.href = "/trees/" + encodeURIComponent(segment) + "/events";
      a.textContent = tree;
      td.appendChild(a);
      tr.appendChild(td);
    }
    cell(tr, str(ev.seq), "num");
    cell(tr, utc(ev.time), "time");
    const type = cell(tr, "");
    const badge = document.createElement("span");
    badge.className = "status " + (CLASSES[ev.type] || "status-none");
    badge.textContent = str(ev.type);
    type.appendChild(badge);
    cell(tr, str(ev.path), "mono path");
    cell(tr, str(ev.policy), "policy");
    cell(tr, str(ev.metric));
    cell(tr, str(ev.used), "num");
    cell(tr, str(ev.held), "num");
    cell(tr, str(ev.limit), "num");
    cell(tr, ev.threshold === null || ev.threshold === undefined ? "" : str(ev.threshold) + "%", "num");
    const details = [];
    for (const name of DETAILS) {
      const v = detail(name, ev[name]);
      if (v !== null) details.push(name + " " + v);
    }
    cell(tr, details.join(" · "), "details");
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > maxRows) body.deleteRow(body.rows.length - 1);
    if (empty) empty.hidden = true;
    return true;
  };

  // The feed. A browser gives a host 6 connections: a page holds one only
  // while it is shown, and tabs of the same feed share it. One tab (the
  // holder of a Web Lock named after the feed) keeps the EventSource and
  // passes each event to the others over a BroadcastChannel; when it goes
  // (closed, hidden), another takes the lock and reopens the feed from the
  // newest seq it has shown, so a tree's feed catches up with what fired
  // meanwhile (the all-trees feed has no catch-up: it says so).
  const base = table.dataset.stream;
  const name = "quota-dash-feed:" + base.split("?")[0];
  const channel = window.BroadcastChannel ? new BroadcastChannel(name) : null;
  const locks = navigator.locks && channel ? navigator.locks : null;
  const recent = [];  // what this tab passed on lately, for a tab that joins
  let source = null;
  let release = null;  // ends this tab's hold on the lock
  let waiting = null;  // aborts this tab's wait for the lock

  const newest = () => seen.get("") || 0;
  const streamUrl = () => {
    if (all) return base;
    const u = new URL(base, window.location.href);
    u.searchParams.set("since", String(newest()));
    return u.pathname + u.search;
  };
  const liveText = all
    ? "Live: new events appear on top as they fire (none are shown for the time this tab is hidden)."
    : "Live: new events appear on top as they fire.";

  const keep = (ev) => {
    recent.push(ev);
    if (recent.length > 500) recent.shift();
  };
  const take = (ev, pass) => {
    if (!ev || typeof ev !== "object") return;
    show(ev);
    if (pass && channel) {
      keep(ev);
      channel.postMessage({ ev });
    }
  };

  const open = () => {
    if (source) return;
    const url = streamUrl();
    const es = new EventSource(url);
    source = es;
    say("", "Connecting to the live feed…");
    es.onopen = () => say("on", liveText);
    es.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      take(ev, true);
    };
    // The log wrapped while this page was away: those events are lost.
    es.addEventListener("gap", (m) => {
      let gap;
      try { gap = JSON.parse(m.data); } catch (e) { return; }
      const notice = document.getElementById("feed-gap");
      if (!notice || !gap) return;
      const span = gap.from === gap.to ? "Event " + gap.from + " was" : "Events " + gap.from + " to " + gap.to + " were";
      notice.textContent = span + " dropped from the log before this page caught up (events_len keeps only the newest): "
        + "they are not shown.";
      notice.classList.add("flash-error");
      notice.hidden = false;
    });
    es.onerror = async () => {
      if (es.readyState === EventSource.CONNECTING) {
        say("off", "The live feed was cut: reconnecting (events fired meanwhile will follow)…");
        return;
      }
      // Closed for good: the dashboard refused the feed. Ask it why.
      say("off", "The live feed stopped: reload the page to try again.");
      try {
        const controller = new AbortController();
        const r = await fetch(url, { signal: controller.signal });
        if (!r.ok) say("off", await r.text());
        controller.abort();
      } catch (e) { /* the dashboard is gone: the message above stands */ }
    };
  };

  const close = () => {
    if (source) source.close();
    source = null;
  };

  if (channel) {
    channel.onmessage = (m) => {
      const d = m.data || {};
      if (d.ev && typeof d.ev === "object") {
        if (show(d.ev)) keep(d.ev);
        if (!source && !document.hidden) say("on", liveText + " (The feed is shared with another tab of this page.)");
      } else if (d.hello !== undefined && source) {
        // A tab joined: what it may have missed since its newest seq.
        for (const ev of recent) if (all || Number(ev.seq) > Number(d.hello)) channel.postMessage({ ev });
        channel.postMessage({ live: true });
      } else if (d.live && !source && !document.hidden) {
        say("on", liveText + " (The feed is shared with another tab of this page.)");
      }
    };
  }

  const start = () => {
    if (!locks) { open(); return; }
    if (release || waiting) return;
    const abort = new AbortController();
    waiting = abort;
    locks.request(name, { signal: abort.signal }, () => {
      waiting = null;
      open();
      return new Promise((resolve) => { release = resolve; });
    }).catch(() => { /* the wait was given up (the tab was hidden) */ });
    // Until this tab holds the feed, another tab's events come over the channel.
    channel.postMessage({ hello: newest() });
  };

  const stop = () => {
    close();
    if (waiting) { waiting.abort(); waiting = null; }
    if (release) { release(); release = null; }
    say("off", all
      ? "Paused while this tab is hidden: events fired meanwhile are not shown."
      : "Paused while this tab is hidden: events fired meanwhile follow when it is shown again.");
  };

  document.addEventListener("visibilitychange", () => { if (document.hidden) stop(); else start(); });
  window.addEventListener("pagehide", stop);
  if (!document.hidden) start(); else stop();
})();
