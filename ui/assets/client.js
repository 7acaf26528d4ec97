// The client's page: renders client.Report, as 'swarmvpn status --json'
// prints it.
"use strict";

const LINK_TEXT = { up: "up", down: "down", connecting: "connecting" };
const KIND_TEXT = { link_up: "link up", link_down: "link down", failover: "failover", port: "port",
  refused: "refused", qbittorrent: "qBittorrent", reach: "reachability" };

function render(r) {
  setText("peer", r.peer || "");
  const state = $("link-state");
  state.textContent = LINK_TEXT[r.link] || r.link || "unknown";
  state.className = "state " + (r.link || "");
  setText("link-since", r.since ? (r.link === "up" ? "up for " : "for ") + ago(r.since) + ", since " + clock(r.since) : "");
  const errEl = $("link-error");
  errEl.hidden = !r.last_error || r.link === "up";
  errEl.textContent = r.last_error || "";

  const id = exitID(r.exit);
  setText("exit-id", id ? shortID(id) : "none");
  $("exit-id").title = id;
  $("exit-id").dataset.full = id;
  setText("exit-addr", exitHost(r.exit));
  setText("exit-rtt", r.rtt || "–");

  // A two-hop path: the relay the client links to, and the exit reached
  // through it (its round trip is then through both hops), as 'swarmvpn
  // status' shows them.
  const relay = exitID(r.relay);
  $("relay").hidden = !relay;
  setText("relay-id", relay ? shortID(relay) : "");
  $("relay-id").title = relay;
  $("relay-id").dataset.full = relay;
  setText("relay-addr", exitHost(r.relay));
  setText("relay-rtt", r.relay_rtt || "–");
  setText("exit-rtt-label", relay ? "round trip through both hops" : "round trip");

  if (r.forwarded_port) {
    setText("forwarded-port", r.forwarded_port);
    setText("forward-detail", "peers reach you at " + (r.public_endpoint || "the exit"));
  } else {
    setText("forwarded-port", "none");
    setText("forward-detail", r.forward === "off" ? "not asked for (--forward off)" :
      r.link === "up" ? "this exit lends none: peers cannot connect to you" : "asked for when a link is up");
  }

  renderReach(r.forwarded_port ? r.reachability : null);

  const t = r.traffic || {};
  setText("totals", "in " + size(t.bytes_in) + " · out " + size(t.bytes_out) + " since start");
  setText("flows-open", Math.max(0, (t.flows_open || 0) - (t.udp_open || 0)));
  setText("udp-open", t.udp_open || 0);
  setText("flows-total", (t.flows || 0) + " opened since start");

  const adv = $("advice");
  adv.hidden = !r.advice;
  adv.textContent = r.advice || "";
  adv.className = "advice" + (r.link !== "up" ? " bad" : "");

  renderExits(r.exits || []);
  renderEvents(r.events || []);
  renderQB(r.qbittorrent);
  setText("socks", r.socks || "off");
  setText("http", r.http || "off");
}

// renderReach says what the last end-to-end check of the forwarded port
// found (client.Reachability), as 'swarmvpn status' does.
function renderReach(rc) {
  const p = $("forward-reach");
  p.hidden = !rc;
  if (!rc) return;
  const when = "checked " + ago(rc.checked) + " ago";
  if (rc.error) {
    p.textContent = "reachability unknown: " + rc.error + " (" + when + ")";
    p.className = "sub";
    return;
  }
  p.textContent = (rc.reachable ? "✓ reachable" : "✗ NOT reachable") +
    " (tcp " + rc.tcp + ", udp " + rc.udp + "; " + when + ")";
  p.className = "sub " + (rc.reachable ? "ok" : "err");
}

function renderExits(exits) {
  const body = $("exits").tBodies[0];
  body.replaceChildren(...exits.map(e => el("tr", {},
    el("td", { class: "mono", title: e.exit }, shortID(exitID(e.exit)) + " @ " + exitHost(e.exit)),
    el("td", {}, e.role ? el("span", { class: "tag " + e.role }, e.role) : ""),
    el("td", {}, e.source),
    el("td", { class: "num" }, e.rtt || "–"),
    el("td", { class: "num" }, e.caps ? Math.round((e.load || 0) * 100) + "%" : "–"),
    el("td", { class: "err" }, e.last_error || ""))));
  $("exits-empty").hidden = exits.length > 0;
}

function renderEvents(events) {
  const list = $("events");
  list.replaceChildren(...events.slice().reverse().map(e => el("li", { class: "k-" + e.kind },
    el("time", { datetime: e.at, title: new Date(e.at).toLocaleString() }, clock(e.at)),
    el("span", {}, el("b", {}, KIND_TEXT[e.kind] || e.kind), " ", e.text,
      e.repeat ? el("span", { class: "rep" }, " (×" + (e.repeat + 1) + ")") : ""))));
  $("events-empty").hidden = events.length > 0;
}

function renderQB(q) {
  $("qb").hidden = !q;
  if (!q) return;
  setText("qb-url", q.url);
  const items = q.error ? [el("li", { class: "err" }, "cannot read its settings: " + q.error)] :
    (q.findings || []).length ? q.findings.map(f => el("li", {}, f)) :
    [el("li", { class: "ok" }, "✓ its settings are safe for swarmvpn")];
  $("qb-findings").replaceChildren(...items);
}

const chart = new Chart($("chart"), 300);
chart.draw();
live(render, chart);
setInterval(() => chart.draw(), 5000);
