// The exit's page: renders ui.ExitStatus, as /api/status serves it.
"use strict";

const REFUSALS = [
  ["allow_list", "links", "client not on the allow-list"],
  ["full", "links", "exit serving as many clients as it allows"],
  ["client_links", "links", "client already holds its links"],
  ["handshake", "links", "handshake failed"],
  ["policy", "TCP flows", "destination refused by the exit policy"],
  ["flow_limit", "flows", "client at its flow cap"],
  ["udp_limit", "UDP associations", "client at its UDP cap"],
  ["udp_policy", "datagrams", "destination refused by the exit policy"],
  ["udp_rate", "datagrams", "over the client's rate limit"],
  ["inbound", "inbound connections", "not taken by the client"],
];

function render(s) {
  setText("peer", s.peer || "");
  $("addrs").replaceChildren(...(s.addrs || []).map(a => el("li", {}, a)));
  setText("started", s.started ? "running for " + ago(s.started) + ", since " +
    new Date(s.started).toLocaleString([], { dateStyle: "medium", timeStyle: "medium", hourCycle: "h23" }) : "");
  setText("clients", s.clients);
  setText("links", plural(s.links, "link", "links") + " open");
  setText("flows-open", Math.max(0, s.flows_open - s.udp_open - s.forwards));
  setText("udp-open", s.udp_open);
  setText("forwards", s.forwards);
  const ports = s.ports || [];
  setText("ports", s.free_ports === undefined ? "port forwarding is off (--forward-ports)" :
    (ports.length ? "ports " + ports.join(", ") + " · " : "") + s.free_ports + " free");
  setText("totals", "in " + size(s.bytes_in) + " · out " + size(s.bytes_out) + " since start");
  const f = s.flows || {};
  setText("n-links", plural(f.links || 0, "link", "links") + " admitted");
  setText("n-connect", f.connect || 0);
  setText("n-udp", f.udp || 0);
  setText("n-inbound", f.inbound || 0);

  const refused = s.refused || {};
  const top = Math.max(1, ...Object.values(refused));
  $("refused").tBodies[0].replaceChildren(...REFUSALS.map(([key, what, why]) => {
    const n = refused[key] || 0;
    const bar = el("div", { class: "bar" });
    bar.style.width = (n / top * 100).toFixed(1) + "%";
    bar.hidden = n === 0;
    return el("tr", { class: n ? "" : "zero", "data-reason": key },
      el("td", { title: key }, why), el("td", {}, what), el("td", { class: "num" }, n), el("td", { class: "barcell" }, bar));
  }));

  const nat = s.nat || [];
  $("nat").tBodies[0].replaceChildren(...nat.map(m => el("tr", {},
    el("td", {}, m.protocol), el("td", { class: "mono" }, m.external || "–"), el("td", { class: "num" }, m.internal),
    el("td", {}, m.method || ""), el("td", { class: m.error ? "err" : "" }, m.error || (m.expires ? "renews before " + clock(m.expires) : "")))));
  $("nat").hidden = nat.length === 0;
  $("nat-empty").hidden = nat.length > 0;
}

const chart = new Chart($("chart"), 300);
chart.draw();
live(render, chart);
setInterval(() => chart.draw(), 5000);
