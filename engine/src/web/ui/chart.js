// The candle page: a symbol's candles drawn as SVG from /api/candles, kept
// live from /events (Server-Sent Events). No library, nothing from the internet.
"use strict";

const NS = "http://www.w3.org/2000/svg";
const svg = document.getElementById("chart");
const picker = document.getElementById("symbol");
let symbol = new URLSearchParams(location.search).get("symbol");
let candles = new Map(); // window start (ms) -> candle of the chosen symbol
let lastRecords = null, lastAt = null;

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// HH:MM, with seconds when the windows are shorter than a minute.
function time(ms, span) {
  return new Date(ms).toISOString().slice(11, span < 60000 ? 19 : 16);
}

function draw() {
  svg.replaceChildren();
  const list = [...candles.values()].sort((a, b) => a.start - b.start);
  const width = svg.clientWidth || 1200, height = svg.clientHeight || 700;
  const left = 10, right = 70, top = 10, priceBottom = height * 0.75, volTop = height * 0.8, bottom = height - 20;
  if (list.length === 0) {
    el("text", { id: "empty", x: width / 2 - 120, y: height / 2 }, svg).textContent =
      symbol ? "waiting for the first candle of " + symbol : "waiting for the first candle";
    return;
  }
  let lo = Math.min(...list.map(c => c.low)), hi = Math.max(...list.map(c => c.high));
  if (hi === lo) { hi += 0.5; lo -= 0.5; }
  const vmax = Math.max(...list.map(c => c.volume), 1);
  const slot = (width - left - right) / Math.max(list.length, 30);
  const y = p => top + (hi - p) / (hi - lo) * (priceBottom - top);
  const vy = v => bottom - v / vmax * (bottom - volTop);
  const chart = el("g", { id: "candles", "data-price-high": hi, "data-price-low": lo,
    "data-y-top": top, "data-y-bottom": priceBottom }, svg);
  const axis = el("g", { class: "axis" }, svg);
  for (let i = 0; i <= 4; i++) {
    const p = lo + (hi - lo) * i / 4;
    el("line", { x1: left, x2: width - right, y1: y(p), y2: y(p) }, axis);
    el("text", { x: width - right + 6, y: y(p) + 4 }, axis).textContent = p.toFixed(2);
  }
  const vwap = [];
  list.forEach((c, i) => {
    const x = left + i * slot + slot / 2;
    const up = c.close >= c.open;
    const g = el("g", {
      class: "candle " + (up ? "up" : "down") + (c.complete ? "" : " open-window"),
      "data-symbol": c.symbol, "data-start": c.start, "data-end": c.end,
      "data-open": c.open, "data-high": c.high, "data-low": c.low, "data-close": c.close,
      "data-volume": c.volume, "data-complete": c.complete,
    }, chart);
    el("line", { class: "wick", x1: x, x2: x, y1: y(c.high), y2: y(c.low) }, g);
    const bodyTop = y(Math.max(c.open, c.close)), bodyBottom = y(Math.min(c.open, c.close));
    el("rect", { class: "body", x: x - slot * 0.35, width: slot * 0.7, y: bodyTop,
      height: Math.max(bodyBottom - bodyTop, 1) }, g);
    el("rect", { class: "volume", x: x - slot * 0.35, width: slot * 0.7, y: vy(c.volume),
      height: bottom - vy(c.volume) }, svg);
    if (c.vwap !== null && c.vwap !== undefined) vwap.push(x + "," + y(c.vwap));
    if (i % Math.ceil(list.length / 8) === 0) {
      el("text", { x: x - 14, y: height - 4 }, axis).textContent = time(c.start, c.end - c.start);
    }
  });
  if (vwap.length > 1) el("polyline", { class: "vwap", points: vwap.join(" ") }, svg);
}

async function load() {
  const s = await (await fetch("/api/symbols")).json();
  document.getElementById("topic").textContent = s.topic;
  for (const name of s.symbols) addSymbol(name);
  if (!symbol && s.symbols.length) symbol = s.symbols[0];
  picker.value = symbol || "";
  await loadCandles();
}

async function loadCandles() {
  candles = new Map();
  if (symbol) {
    const list = await (await fetch("/api/candles?symbol=" + encodeURIComponent(symbol))).json();
    for (const c of list) candles.set(c.start, c);
  }
  draw();
}

function addSymbol(name) {
  if ([...picker.options].some(o => o.value === name)) return;
  const o = document.createElement("option");
  o.value = o.textContent = name;
  picker.appendChild(o);
}

picker.addEventListener("change", () => {
  symbol = picker.value;
  history.replaceState(null, "", "?symbol=" + encodeURIComponent(symbol));
  loadCandles();
});

const events = new EventSource("/events");
events.addEventListener("candle", e => {
  const c = JSON.parse(e.data);
  addSymbol(c.symbol);
  if (!symbol) { symbol = c.symbol; picker.value = symbol; }
  if (c.symbol === symbol) { candles.set(c.start, c); draw(); }
});
events.addEventListener("reload", () => loadCandles());
events.addEventListener("figures", e => {
  const f = JSON.parse(e.data), now = Date.now();
  if (lastRecords !== null && now > lastAt) {
    const rate = (f.records_in - lastRecords) / ((now - lastAt) / 1000);
    document.getElementById("rate").textContent = Math.round(rate).toLocaleString();
  }
  lastRecords = f.records_in; lastAt = now;
  document.getElementById("watermark").textContent =
    f.watermark_ms === null ? "-" : new Date(f.watermark_ms).toISOString().replace("T", " ").slice(0, 19);
  document.getElementById("lag").textContent = f.lag_records.toLocaleString();
  document.getElementById("late").textContent = f.late_rows.toLocaleString();
  document.getElementById("bad").textContent = f.bad_records.toLocaleString();
  document.getElementById("checkpoint").textContent = f.last_checkpoint || "-";
});
addEventListener("resize", draw);
load();
