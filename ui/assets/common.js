// swarmvpn status pages: what both pages share. Plain script, no framework:
// formatting, the rate chart (hand-written SVG) and the live stream.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

// $ returns the element with id.
function $(id) { return document.getElementById(id); }

// setText sets an element's text, when it changed.
function setText(id, text) {
  const el = $(id);
  if (el && el.textContent !== String(text)) el.textContent = text;
}

// el builds an element with attributes and children (strings become text).
function el(tag, attrs, ...kids) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

// size writes a byte count with a binary unit, as 'swarmvpn status' does.
function size(n) {
  if (!isFinite(n) || n < 1024) return Math.round(n || 0) + " B";
  const units = "KMGTPE";
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " " + units[i] + "iB";
}
function rate(n) { return size(n) + "/s"; }

// ago writes how long ago a time was: 45s, 3m 12s, 2h 5m, 3d 4h.
function ago(t) {
  let s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  if (s < 60) return s + "s";
  let m = Math.floor(s / 60); s %= 60;
  if (m < 60) return m + "m " + s + "s";
  let h = Math.floor(m / 60); m %= 60;
  if (h < 48) return h + "h " + m + "m";
  return Math.floor(h / 24) + "d " + (h % 24) + "h";
}

function clock(t) { return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }); }
function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }
function shortID(id) { return id && id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id || ""; }
function exitID(exit) { return (exit || "").split("@")[0]; }
function exitHost(exit) { const i = (exit || "").indexOf("@"); return i < 0 ? "" : exit.slice(i + 1); }

// niceMax rounds a rate up to 1, 2 or 5 times a power of 1024 or 10, so
// that gridlines fall on round numbers.
function niceMax(v) {
  if (!(v > 0)) return 1024;
  let base = 1;
  while (base * 1024 <= v) base *= 1024;
  const x = v / base;
  for (const m of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1024]) if (x <= m) return m * base;
  return 1024 * base;
}

// Chart draws rates (down and up) over the last span seconds into an SVG.
class Chart {
  constructor(svg, span) { this.svg = svg; this.span = span; this.samples = []; }
  setHistory(h) {
    if (h.interval > 0) this.span = Math.max(this.span, h.interval * 60);
    this.samples = (h.samples || []).slice();
    this.draw();
  }
  add(s) {
    this.samples.push(s);
    const cut = Date.now() - this.span * 1000 - 5000;
    while (this.samples.length && this.samples[0][0] < cut) this.samples.shift();
    this.draw();
  }
  last() { return this.samples.length ? this.samples[this.samples.length - 1] : null; }
  draw() {
    const W = 900, H = 240, L = 78, R = 12, T = 12, B = 26;
    const svg = this.svg;
    svg.replaceChildren();
    const now = Date.now(), from = now - this.span * 1000;
    const pts = this.samples.filter(s => s[0] >= from);
    let top = 0;
    for (const s of pts) top = Math.max(top, s[1], s[2]);
    const ymax = niceMax(top);
    const x = t => L + (t - from) / (now - from) * (W - L - R);
    const y = v => T + (1 - v / ymax) * (H - T - B);
    const grid = el("svg:g", { class: "grid" }), axis = el("svg:g", { class: "axis" });
    for (let i = 0; i <= 4; i++) {
      const v = ymax * i / 4;
      grid.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      axis.append(el("svg:text", { x: L - 8, y: y(v) + 4, "text-anchor": "end" }, rate(v)));
    }
    const minutes = Math.round(this.span / 60);
    for (let m = 0; m <= minutes; m++) {
      const t = now - (minutes - m) * 60000;
      grid.append(el("svg:line", { x1: x(t), x2: x(t), y1: T, y2: H - B }));
      axis.append(el("svg:text", { x: x(t), y: H - 7, "text-anchor": m === minutes ? "end" : m === 0 ? "start" : "middle" },
        m === minutes ? "now" : "−" + (minutes - m) + " min"));
    }
    svg.append(grid, axis);
    if (pts.length < 2) {
      svg.append(el("svg:text", { class: "nodata", x: (L + W) / 2, y: H / 2, "text-anchor": "middle" },
        "collecting samples…"));
      return;
    }
    const path = i => pts.map((s, j) => (j ? "L" : "M") + x(s[0]).toFixed(1) + " " + y(s[i]).toFixed(1)).join("");
    const area = path(1) + "L" + x(pts[pts.length - 1][0]).toFixed(1) + " " + y(0) + "L" + x(pts[0][0]).toFixed(1) + " " + y(0) + "Z";
    svg.append(el("svg:path", { class: "area down", d: area }),
      el("svg:path", { class: "line down", d: path(1) }),
      el("svg:path", { class: "line up", d: path(2) }));
  }
}

// live opens the page's event stream: render gets each snapshot, the chart
// each rate sample; the header says whether the stream is up.
function live(render, chart) {
  const dot = $("live");
  const es = new EventSource("api/events");
  es.onopen = () => { dot.textContent = "live"; dot.className = "live on"; };
  es.onerror = () => { dot.textContent = "reconnecting…"; dot.className = "live off"; };
  es.addEventListener("history", e => chart.setHistory(JSON.parse(e.data)));
  es.addEventListener("rate", e => chart.add(JSON.parse(e.data)));
  es.addEventListener("status", e => {
    const s = JSON.parse(e.data);
    render(s);
    const r = chart.last();
    setText("rate-down", r ? rate(r[1]) : "–");
    setText("rate-up", r ? rate(r[2]) : "–");
    document.body.dataset.updated = String(Date.now());
  });
}
