// citypath's player: plays a comparison the server computed once (every model's K steps), in the browser.
//
// The server sends, once per comparison, the map's static layers and one set of route layers per step,
// all written with pydeck (deck.gl's JSON converter reads pydeck's spec), plus each model's metrics per
// step. Play, pause, back, next, speed and the step slider run here, with no server round trip per frame;
// the shown step goes back to Python only when the user stops or moves it (for the link and the exports),
// and a click on a city goes back at once (it changes the question). boot.js (inline in index.html) loads
// this file once it has painted a still preview of the map from the first arguments.

import { Deck, MapView } from "@deck.gl/core";
import * as Layers from "@deck.gl/layers";
import { TileLayer } from "@deck.gl/geo-layers";
import { PathStyleExtension } from "@deck.gl/extensions";
import { JSONConverter, JSONConfiguration } from "@deck.gl/json";
import { nice, ticks } from "d3-array";
import { attach as attachPicking, hoverLayers, pickedOnCpu } from "./pick.js";

// The link to Streamlit (the component protocol) is boot.js's, which loaded this file.
const link = window.citypathLink;

const converter = new JSONConverter({
  // PathStyleExtension: a model's line pattern (citypath.palette), the same on the map, its legend and charts.
  configuration: new JSONConfiguration({ classes: { ...Layers, MapView, PathStyleExtension } }),
});
let SPEEDS = [0.5, 1, 2, 4, 8, 16];   // replaced by the server's list (session.SPEEDS)
const BASEMAP_URL = "https://basemaps.cartocdn.com/light_all/{z}/{x}/{y}.png";

const $ = (id) => document.getElementById(id);
const state = {
  id: null,        // the comparison shown (pair, models, K, seed, ...): a new one resets the player
  args: null,
  frames: [],      // frames[k-1]: deck.gl layers of step k (converted once; [] until fetched)
  first: null,     // {step, layers}: the step the player opens at, sent inline: drawn until the frames are in
  nFrames: 0,      // how many steps the comparison has (known before its frames arrive)
  framesFrom: null, // the frames' source (their URL, or the arguments that held them): converted once
  bottom: [],      // static layers under the routes
  top: [],         // static layers over the routes (endpoints, labels)
  step: 1,
  speed: 1,
  playing: false,
  timer: null,
  fade: null,      // {from, to, start, ms}
  seq: Date.now(), // increasing id of what we report (from the clock, so a reloaded player still counts up)
  reported: new Set(),   // steps this player reported for the shown comparison (their echoes are not moves)
  basemapFailed: false,
  viewState: null,
};

let deck = null;

function layerList(json) {
  if (!json || !json.length) return [];
  // Picking is answered from the data (pick.js), never by deck.gl's picking pass.
  return converter.convert({ layers: json.map(pickedOnCpu) }).layers.filter(Boolean);
}

function absoluteUrl(url) {
  // The iframe's address is the component's, not the app's: resolve "app/static/..." against the app.
  if (/^(https?:|data:)/.test(url)) return url;
  const params = new URLSearchParams(window.location.search);
  const base = params.get("streamlitUrl") || document.referrer || window.location.href;
  return new URL(url, base).toString();
}

function absoluteData(layers) {
  // Data given by URL (the all-cities layer: 1.5 MB on the full graph) is fetched here, once per URL, and
  // the layer drawn empty until it arrives: the map never waits for the city layer, and the name boxes
  // search the same list. The city layer is asked for only once the routes' frames are in: fetched and
  // parsed together, it held the routes back.
  return layers.map((l) => {
    // (Once the cities are in, new frames, e.g. the state layer's, never hide them again.)
    if (l.id === CITIES_ID && typeof l.data === "string" && !framesSettled()
        && !downloads.get(absoluteUrl(l.data))?.data) return { ...l, data: [] };
    const data = typeof l.data === "string" ? fetched(absoluteUrl(l.data)) : l.data;
    if (l.id === CITIES_ID) useCities(data);
    return { ...l, data: data || [] };
  });
}

const downloads = new Map();   // url -> {data, error}

function fetched(url) {
  const have = downloads.get(url);
  if (have) return have.data;
  const entry = { data: null, error: null };
  downloads.set(url, entry);
  fetch(url)
    .then((r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); return r.json(); })
    .then((data) => {
      entry.data = data;
      if (!state.args) return;
      const had = state.frames.length;
      loadFrames(state.args);
      state.bottom = layerList(absoluteData(state.args.static.bottom || []));
      if (!had && state.frames.length) show(state.step, { fade: false });
      else draw();
      refreshSuggestions();
    })
    .catch((e) => {
      entry.error = `Part of the map could not be loaded (${e.message}): reload the page.`;
      renderNotes();
      if (state.args) {   // what waited for this download (the city layer waits for the frames) goes on
        state.bottom = layerList(absoluteData(state.args.static.bottom || []));
        draw();
      }
    });
  return null;
}

function framesSettled() {
  // The routes' frames are here (or failed, or came inline): the city layer may load.
  const a = state.args;
  if (!a || typeof a.frames !== "string") return true;
  const d = downloads.get(absoluteUrl(a.frames));
  return !!d && (d.data !== null || d.error !== null);
}

function loadFrames(a) {
  // The steps' route layers: inline, or (the app's way) a URL of a file written once per comparison and
  // shared by every visitor, so the server sends each visitor a few KB instead of every step's layers.
  const source = typeof a.frames === "string" ? absoluteUrl(a.frames) : a.frames || [];
  state.nFrames = a.n_frames ?? (Array.isArray(a.frames) ? a.frames.length : 0);
  if (source === state.framesFrom && state.frames.length) return;
  const data = typeof source === "string" ? fetched(source) : source;
  // More models of the same comparison: keep drawing the routes we have until the new file is in.
  if (!data && a.id === state.id && state.frames.length) return;
  state.frames = data ? data.map(layerList) : [];
  state.framesFrom = data ? source : null;
  const f = a.first_frame;
  state.first = !data && f ? { step: f.step, layers: layerList(f.layers) } : null;
}

function routesAt(step) {
  // The route layers of `step`: from the frames, or before they arrive the inline first frame. Fresh
  // instances each draw: deck.gl finalizes a layer that leaves the map (the ghosts at step 1, the illegal
  // jumps of a step that has none) and throws "assertion failed" when that instance is handed back.
  const layers = state.frames.length ? state.frames[step - 1] || []
    : state.first && state.first.step === step ? state.first.layers : [];
  return layers.map((l) => l.clone({}));
}

function waitingFor() {
  // How many downloads the map still waits for, other than the city layer (the outlines).
  return ((state.args && state.args.static.bottom) || [])
    .filter((l) => typeof l.data === "string" && l.id !== CITIES_ID)
    .filter((l) => { const d = downloads.get(absoluteUrl(l.data)); return !d || (!d.data && !d.error); }).length;
}

// -- the cities: the map's pickable layer and the From / To name boxes ------------------------------------
const CITIES_ID = "cities";
const cities = { records: null, names: [], keys: [], pops: [] };

function normaliseName(text) {
  return String(text).normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
    .replace(/[^a-z0-9]+/g, " ").trim();
}

function useCities(records) {
  // Each record is {id, p: [lon, lat], tip: "Name, ST\npop 12,345"} (citypath.maplayers.cities_records).
  if (!Array.isArray(records) || records === cities.records) return;
  cities.records = records;
  cities.names = records.map((r) => String(r.tip).split("\n")[0]);
  cities.keys = cities.names.map(normaliseName);
  cities.pops = records.map((r) => Number((String(r.tip).split("\n")[1] || "").replace(/[^0-9]/g, "")) || 0);
}

function findCities(query, limit = 8) {
  // Names starting with the query first, then a word starting with it, then containing it; larger first.
  const q = normaliseName(query);
  if (!q || !cities.keys.length) return [];
  const starts = [], words = [], inside = [];
  cities.keys.forEach((key, i) => {
    if (key.startsWith(q)) starts.push(i);
    else if (key.includes(` ${q}`)) words.push(i);
    else if (key.includes(q)) inside.push(i);
  });
  const larger = (a, b) => cities.pops[b] - cities.pops[a];
  return [...starts.sort(larger), ...words.sort(larger), ...inside.sort(larger)].slice(0, limit);
}

const picker = { input: null, options: [], active: 0 };
const END_OF = { from: "source", to: "target" };

function endLabel(input) {
  const ends = (state.args && state.args.ends) || {};
  return (ends[END_OF[input.id]] || {}).label || "";
}

function closeSuggestions() {
  picker.input = null;
  picker.options = [];
  $("suggest").hidden = true;
  for (const id of ["from", "to"]) $(id).setAttribute("aria-expanded", "false");
}

function refreshSuggestions() {
  const input = picker.input;
  if (!input) return;
  const box = $("suggest");
  picker.options = findCities(input.value);
  picker.active = Math.min(picker.active, Math.max(picker.options.length - 1, 0));
  let html;
  if (!cities.records) html = `<li class="hint">loading the cities…</li>`;
  else if (!normaliseName(input.value)) html = `<li class="hint">type a city's name</li>`;
  else if (!picker.options.length) html = `<li class="hint">no city matches “${esc(input.value)}”</li>`;
  else {
    html = picker.options.map((i, n) => `<li role="option" id="opt-${n}" data-n="${n}" aria-selected="${n === picker.active}"` +
      `>${esc(cities.names[i])}<span class="pop">${cities.pops[i].toLocaleString("en-US")}</span></li>`).join("");
  }
  box.innerHTML = html;
  box.style.left = `${input.offsetLeft}px`;
  box.style.top = `${input.offsetTop + input.offsetHeight + 2}px`;
  box.style.minWidth = `${input.offsetWidth}px`;
  box.hidden = false;
  input.setAttribute("aria-expanded", "true");
  input.setAttribute("aria-activedescendant", picker.options.length ? `opt-${picker.active}` : "");
}

function choose(input, n) {
  const i = picker.options[n];
  if (i === undefined) return;
  const city = cities.records[i].id;
  input.value = cities.names[i];
  closeSuggestions();
  input.blur();
  const end = END_OF[input.id];
  if (((state.args && state.args.ends) || {})[end]?.id === city) return;
  stop(false);
  report({ pick: { end, id: Number(city) } });
}

function setupPicker(input) {
  input.addEventListener("focus", () => { input.select(); picker.input = input; picker.active = 0; refreshSuggestions(); });
  input.addEventListener("input", () => { picker.input = input; picker.active = 0; refreshSuggestions(); });
  input.addEventListener("blur", () => {
    // Leaving without choosing puts the route's city back.
    setTimeout(() => { if (document.activeElement !== input) { input.value = endLabel(input); closeSuggestions(); } }, 0);
  });
  input.addEventListener("keydown", (e) => {
    const n = picker.options.length;
    if (e.key === "ArrowDown" && n) { picker.active = (picker.active + 1) % n; refreshSuggestions(); e.preventDefault(); }
    else if (e.key === "ArrowUp" && n) { picker.active = (picker.active + n - 1) % n; refreshSuggestions(); e.preventDefault(); }
    else if (e.key === "Enter") { choose(input, picker.active); e.preventDefault(); }
    else if (e.key === "Escape") { input.value = endLabel(input); closeSuggestions(); input.blur(); }
  });
}

function basemapLayer() {
  return new TileLayer({
    id: "basemap", data: BASEMAP_URL, minZoom: 0, maxZoom: 19, tileSize: 256,
    onTileError: () => {
      if (!state.basemapFailed) { state.basemapFailed = true; renderNotes(); }
    },
    renderSubLayers: (props) => {
      const { boundingBox } = props.tile;
      return new Layers.BitmapLayer(props, {
        data: null, image: props.data,
        bounds: [boundingBox[0][0], boundingBox[0][1], boundingBox[1][0], boundingBox[1][1]],
      });
    },
  });
}

function withOpacity(layers, factor, prefix) {
  return layers.map((l) => l.clone({ id: prefix + l.id, opacity: (l.props.opacity ?? 1) * factor }));
}

function currentLayers() {
  const base = state.args && state.args.basemap ? [basemapLayer(), ...state.bottom] : state.bottom;
  const cur = routesAt(state.step);
  const f = state.fade;
  if (f) {
    const t = Math.min((performance.now() - f.start) / f.ms, 1);
    const prev = routesAt(f.from);
    return [...base, ...withOpacity(prev, 1 - t, "was-"), ...withOpacity(cur, t, ""), ...state.top];
  }
  return [...base, ...cur, ...state.top];
}

function draw() {
  if (deck) deck.setProps({ layers: [...currentLayers(), ...hoverLayers()] });
}

function animateFade() {
  const f = state.fade;
  if (!f) return;
  draw();
  if (performance.now() - f.start >= f.ms) { state.fade = null; draw(); return; }
  requestAnimationFrame(animateFade);
}

function show(step, { fade = true } = {}) {
  const k = Math.max(1, Math.min(step, state.nFrames || 1));
  if (k !== state.step && fade && state.frames.length) {
    // Cross-fade from the shown step, over at most half a tick (so 16 steps/s still fades).
    const ms = Math.min(220, 500 / state.speed);
    state.fade = { from: state.step, to: k, start: performance.now(), ms };
    state.step = k;
    requestAnimationFrame(animateFade);
  } else {
    state.step = k;
    draw();
  }
  renderControls();
  renderStrip();
  renderLegend();
  markCharts();
  document.body.dataset.step = String(state.step);   // for tests and screen readers
}

function report(extra = {}) {
  state.seq += 1;
  state.reported.add(state.step);
  link.setComponentValue({ step: state.step, speed: state.speed, seq: state.seq,
                          comparison: state.id, ...extra });
}

function stop(reportIt = true) {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
  state.playing = false;
  document.body.dataset.playing = "false";
  renderControls();
  if (reportIt) report();
}

function tick() {
  if (!state.playing) return;
  if (state.step >= state.nFrames) { stop(); return; }
  show(state.step + 1);
  if (state.step >= state.nFrames) { stop(); return; }
  schedule();
}

function schedule() {
  // A fixed-rate clock: each tick is due at start + n / speed, so a slow frame does not stretch the next.
  state.due = (state.due || performance.now()) + 1000 / state.speed;
  state.timer = setTimeout(tick, Math.max(0, state.due - performance.now()));
}

function play() {
  if (state.nFrames <= 1 || !state.frames.length) return;
  if (state.step >= state.nFrames) show(1, { fade: false });
  state.playing = true;
  document.body.dataset.playing = "true";
  state.due = performance.now();
  renderControls();
  schedule();
}

function renderControls() {
  const n = state.nFrames;
  const playable = !!(state.args && state.args.playable) && n > 1 && state.frames.length > 0;
  $("controls").style.display = state.args && state.args.playable ? "flex" : "none";
  $("play").innerHTML = state.playing
    ? '<svg viewBox="0 0 24 24"><path d="M6 5h4v14H6zm8 0h4v14h-4z"/></svg>Pause'
    : '<svg viewBox="0 0 24 24"><path d="M8 5v14l11-7z"/></svg>Play';
  $("play").disabled = !playable;
  $("play").title = playable ? "" : n > 1 && !state.frames.length ? "The routes are still loading."
    : "Nothing to play: choose a model and more than 1 step.";
  $("back").disabled = state.step <= 1;
  $("next").disabled = state.step >= n;
  const slider = $("step");
  slider.max = String(Math.max(n, 1));
  slider.value = String(state.step);
  slider.disabled = n <= 1;
  $("steptext").textContent = n ? `step ${state.step} of ${n}` : "optimal path only";
  $("speed").value = String(state.speed);
}

const esc = (t) => String(t ?? "").replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch]);

function cell(c) {
  const delta = c.delta ? `<span class="delta ${c.good}">${esc(c.delta)}</span>` : "";
  return `<div class="cell" title="${esc(c.help)}"><div class="label">${esc(c.label)}</div>` +
    `<div class="value">${esc(c.value)}${delta}</div></div>`;
}

function renderStrip() {
  const models = (state.args && state.args.models) || [];
  const pending = (state.args && state.args.pending) || [];
  const rows = models.map((m) => {
    const k = Math.min(state.step, m.cards.length) - 1;
    const cards = k >= 0 ? m.cards[k] : [];
    // A model with no cards still says why (equal compute: not even its first step fits the budget).
    const note = m.notes && m.notes.length ? m.notes[Math.max(k, 0)] : "";
    const error = m.error ? `<div class="error">${esc(m.error)}</div>` : "";
    const over = m.shown === 0 ? " over" : "";
    return `<div class="model${over}" data-model="${esc(m.name)}"><div class="head">${swatch(m.colour, m.dash)}` +
      `${esc(m.title)}<span class="note">${esc(note)}</span></div>${error}` +
      `<div class="cells">${cards.map(cell).join("")}</div></div>`;
  });
  const waiting = pending.map((name) => `<div class="model pending"><div class="head">${esc(name)}: computing…</div></div>`);
  $("strip").innerHTML = rows.join("") + waiting.join("");
}

// -- the step charts: each model's metric over every step, with a marker at the shown step ----------------
// Drawn here (SVG), not by Streamlit's Vega-Lite charts beside the player: those held the page's main thread
// (which this frame shares) for ~0.7 s while the map's first paint waited, and could not follow playback.
const charts = { width: 0, geometry: new Map() };   // field -> {X, Y, models} of the chart last drawn

function valueTicks(lo, hi, integer, decimals = 0) {
  // About four round intervals covering lo..hi (d3's nice domain and ticks); whole numbers for counts. The span is
  // at least four steps of the labels' precision, so no two labels read the same ("0", "0", "0").
  const least = integer ? 1 : 4 * Math.pow(10, -decimals);
  if (!(hi - lo >= least)) hi = lo + Math.max(least, integer ? 1 : Math.abs(lo) * 0.1);
  const [a, b] = nice(lo, hi, 4);
  const out = ticks(a, b, 4);
  return integer ? [...new Set(out.map(Math.round))] : out;
}

function stepTicks(n) {
  // Steps 1..n: 1, then round steps (d3's ticks, at most ~8 labels).
  return [...new Set([1, ...ticks(1, n, 7).filter(Number.isInteger)])];
}

function chartSvg(chart, models, n, width) {
  const H = 150;
  const values = models.flatMap((m) => ((m.series || {})[chart.field] || []).filter((v) => v !== null));
  // Steps whose route did not arrive: a figure against the optimal route is not drawn there (a gap), and a
  // cross on the step axis says why.
  const misses = chart.arrived_only ? models.map((m) => (m.arrived || []).map((ok, j) => (ok ? 0 : j + 1))
    .filter(Boolean)) : models.map(() => []);
  const missed = misses.some((list) => list.length);
  // The crosses go in rows of their own under the step axis's labels (never inside the plot, where they would
  // read as values): at each step, one row per model that missed it.
  const row = new Map();   // "i|k" -> the cross's row at step k
  for (let k = 1; k <= n; k += 1) {
    let j = 0;
    misses.forEach((list, i) => { if (list.includes(k)) row.set(`${i}|${k}`, Math.min(j++, 3)); });  // 4 rows at most
  }
  const rows = Math.max(0, ...[...row.values()].map((j) => j + 1));
  const M = { l: 46, r: 12, t: 8, b: 34 + 9 * rows };
  if (!values.length) {
    const why = missed ? `${(state.args && state.args.not_arrived) || "did not arrive"} at any step: nothing to ` +
      `compare with the optimal route` : "no value at any step";
    return { html: `<div class="nochart">${esc(why)}</div>`, geometry: null };
  }
  const integer = chart.decimals === 0;
  const lo = integer ? Math.min(0, ...values) : Math.min(...values);
  const yt = valueTicks(lo, Math.max(...values), integer, chart.decimals);
  const [y0, y1] = [yt[0], yt[yt.length - 1]];
  const X = (k) => M.l + (n > 1 ? (k - 1) / (n - 1) : 0.5) * (width - M.l - M.r);
  const Y = (v) => M.t + (1 - (v - y0) / (y1 - y0)) * (H - M.t - M.b);
  const fmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: chart.decimals });
  const px = (v) => v.toFixed(1);
  const grid = yt.map((v) => `<line class="grid" x1="${M.l}" x2="${width - M.r}" y1="${px(Y(v))}" y2="${px(Y(v))}"/>` +
    `<text class="tick y" x="${M.l - 6}" y="${px(Y(v) + 4)}" text-anchor="end">${fmt.format(v)}</text>`).join("");
  const xaxis = stepTicks(n).map((k) => `<line class="axis" x1="${px(X(k))}" x2="${px(X(k))}" y1="${H - M.b}" ` +
    `y2="${H - M.b + 4}"/><text class="tick x" x="${px(X(k))}" y="${H - M.b + 16}" text-anchor="middle">${k}</text>`).join("");
  const lines = models.map((m, i) => {
    const vs = (m.series || {})[chart.field] || [];
    let d = "", dots = "", open = false;
    vs.forEach((v, j) => {
      if (v === null) { open = false; return; }
      d += `${open ? "L" : "M"}${px(X(j + 1))},${px(Y(v))}`;
      open = true;
      dots += `<circle cx="${px(X(j + 1))}" cy="${px(Y(v))}" r="2.5"><title>${esc(m.name)} · step ${j + 1}: ` +
        `${fmt.format(v)}</title></circle>`;
    });
    const crosses = misses[i].map((k) => {
      const x = X(k), y = H - M.b + 25 + 9 * row.get(`${i}|${k}`);
      return `<path class="miss" data-step="${k}" d="M${px(x - 3)},${px(y - 3)}L${px(x + 3)},${px(y + 3)}` +
        `M${px(x - 3)},${px(y + 3)}L${px(x + 3)},${px(y - 3)}"><title>${esc(m.name)} · step ${k}: ` +
        `${esc((state.args && state.args.not_arrived) || "did not arrive")}</title></path>`;
    }).join("");
    const dash = m.dash ? ` stroke-dasharray="${m.dash.map((x) => (x * 2).toFixed(1)).join(" ")}"` : "";
    return `<g class="series" data-model="${esc(m.name)}" fill="${esc(m.colour)}" stroke="${esc(m.colour)}">` +
      `<path class="line" d="${d}" fill="none"${dash}/>${dots}${crosses}` +
      `<circle class="now" data-i="${i}" r="5" visibility="hidden"/></g>`;
  }).join("");
  const html = `<svg width="${width}" height="${H}" data-field="${esc(chart.field)}" role="img" ` +
    `aria-label="${esc(chart.title)} at each refinement step">${grid}` +
    `<line class="axis" x1="${M.l}" x2="${width - M.r}" y1="${H - M.b}" y2="${H - M.b}"/>${xaxis}` +
    `<text class="axistitle" x="${(M.l + width - M.r) / 2}" y="${H - 3}" text-anchor="middle">refinement step</text>` +
    `<line class="marker" y1="${M.t}" y2="${H - M.b}"/>${lines}</svg>`;
  return { html, geometry: { X, Y }, missed };
}

function renderCharts() {
  const a = state.args;
  const list = (a && a.charts) || [];
  const box = $("charts");
  const models = ((a && a.models) || []).filter((m) => m.series && Object.keys(m.series).length);
  if (!list.length || !models.length) { box.innerHTML = ""; charts.geometry.clear(); return; }
  const gap = 16;
  const width = Math.max(220, Math.floor((box.clientWidth - gap * (list.length - 1)) / list.length));
  charts.width = box.clientWidth;
  charts.geometry.clear();
  box.innerHTML = list.map((c) => {
    const { html, geometry, missed } = chartSvg(c, models, state.nFrames || 1, width);
    if (geometry) charts.geometry.set(c.field, { ...geometry, models });
    const note = missed ? `<span class="missnote" title="a step whose route did not arrive: no point">× did not ` +
      `arrive</span>` : "";
    return `<div class="chart"><div class="ctitle">${esc(c.title)}${note}</div>${html}</div>`;
  }).join("");
  markCharts();
}

function markCharts() {
  // The shown step: a rule across each chart, and each model's value there ringed.
  for (const svg of $("charts").querySelectorAll("svg[data-field]")) {
    const geo = charts.geometry.get(svg.dataset.field);
    if (!geo) continue;
    const x = geo.X(state.step).toFixed(1);
    const rule = svg.querySelector(".marker");
    rule.setAttribute("x1", x);
    rule.setAttribute("x2", x);
    svg.dataset.step = String(state.step);
    for (const dot of svg.querySelectorAll("circle.now")) {
      const v = (geo.models[Number(dot.dataset.i)].series[svg.dataset.field] || [])[state.step - 1];
      dot.setAttribute("visibility", v === null || v === undefined ? "hidden" : "visible");
      if (v !== null && v !== undefined) { dot.setAttribute("cx", x); dot.setAttribute("cy", geo.Y(v).toFixed(1)); }
    }
  }
}

function swatch(colour, dash, width = 22) {
  // A model's line as the map draws it: its colour and its line pattern (citypath.palette), for the legend and
  // the strip (a colour-blind reader matches the pattern where two colours look alike).
  const w = 3.5;
  const pattern = dash ? ` stroke-dasharray="${dash.map((d) => (d * w).toFixed(1)).join(" ")}"` : "";
  return `<svg class="swatch" width="${width}" height="10" aria-hidden="true"><line x1="1" x2="${width - 1}" y1="5" ` +
    `y2="5" stroke="${esc(colour)}" stroke-width="${w}"${pattern}/></svg>`;
}

function legendLabel(m) {
  // Each model's own step: the shown one while playing, its budget's step at equal compute (0: none fits).
  if (m.shown === null || m.shown === undefined) return `${m.name} · step ${Math.min(state.step, m.cards.length)}`;
  // None fits: not drawn, and why (with the figure: "even one step costs 3 Mops, over the budget of 1 Mops").
  return m.shown > 0 ? `${m.name} · step ${m.shown}` : `${m.name} · not drawn: ${(m.notes || [])[0] || "no step fits"}`;
}

function renderLegend() {
  const a = state.args;
  if (!a) return;
  const chip = ([colour, label, style, dash]) => {
    const mark = style === "dot"
      ? `<span class="ldot" style="background:${colour}"></span>`
      : style === "model" ? swatch(colour, dash)
        : `<span class="lline ${style}" style="border-top-color:${colour}"></span>`;
    return `<span class="chip">${mark}${esc(label)}</span>`;
  };
  const models = (a.models || []).map((m) => [m.colour, legendLabel(m), "model", m.dash]);
  // The faint ghost of each model's previous step is drawn only while playing, from step 2 (never in a still
  // comparison): named here whenever it is on the map.
  const ghost = a.playable && state.step > 1 && models.length
    ? [["#777777", "previous step (faint, in each model's colour)", "ghost"]] : [];
  $("legend").innerHTML = [...(a.legend_head || []), ...models, ...ghost, ...(a.legend_tail || [])].map(chip).join("");
}

function renderNotes() {
  const a = state.args || {};
  const notes = [...(a.notes || [])];
  for (const d of downloads.values()) if (d.error) notes.push(d.error);
  if (a.basemap && state.basemapFailed) {
    notes.push("Basemap tiles could not be loaded (no internet?): the offline state outlines are shown instead.");
  }
  $("notes").innerHTML = notes.map((n) => `<div class="notice">${esc(n)}</div>`).join("");
}

function onCityClick(id) {
  // A click on a city (the nearest to the click, found from the layers' data: see pick.js) sets an end.
  stop(false);
  report({ click: Number(id) });
}

// When the map first showed its outlines and optimal path (static), the city layer (cities) and each model's
// route (routes), as Date.now() in ms, for the paint-order test and benchmarks/browser_app.py: set once
// every layer drawn has its data. Also when this script started and deck.gl first drew (boot.js marks
// when it ran, when the first arguments came and when its still preview painted the map and routes).
window.citypathPaint = window.citypathPaint || {};   // boot.js's marks (boot, args, previewMap, ...)
window.citypathPaint.script = Date.now();
function layersLoaded() {
  const layers = (deck && deck.layerManager && deck.layerManager.getLayers()) || [];
  return layers.length > 0 && layers.every((l) => l.isLoaded);
}

function markPainted() {
  const marks = window.citypathPaint;
  if (deck && marks.rendered === undefined) marks.rendered = Date.now();
  if (!deck || !layersLoaded()) return;
  if (marks.cities === undefined && cities.records && cities.records.length) marks.cities = Date.now();
  if (marks.static === undefined && state.bottom.length && !waitingFor()) {
    marks.static = Date.now();
    document.body.dataset.painted = "map";
    const still = $("preview");      // boot.js's still preview: deck.gl has drawn the map over it
    if (still) still.remove();
  }
  const models = (state.args && state.args.models) || [];
  if (marks.routes === undefined && models.length && !(state.args.pending || []).length && routesAt(state.step).length) {
    marks.routes = Date.now();
    document.body.dataset.painted = "routes";
  }
}

function resize() {
  link.setFrameHeight(document.getElementById("root").scrollHeight);
}

function render(message) {
  const a = message.args;
  if (a.speeds && a.speeds.join() !== SPEEDS.join()) {
    SPEEDS = a.speeds;
    $("speed").innerHTML = SPEEDS.map((s) => `<option value="${s}">${s} steps/s</option>`).join("");
  }
  const newComparison = a.id !== state.id;
  state.args = a;
  loadFrames(a);
  state.bottom = layerList(absoluteData(a.static.bottom || []));
  state.top = layerList(a.static.top || []);
  $("map").style.height = `${a.height || 560}px`;
  renderCharts();
  if (!deck) {
    state.viewState = a.static.initialViewState;
    deck = new Deck({
      parent: $("map"),
      views: [new MapView({ controller: true })],
      initialViewState: a.static.initialViewState,
      layers: [],
      useDevicePixels: true,
      onAfterRender: markPainted,
    });
    attachPicking(deck, $("map"), { onCity: onCityClick, redraw: draw });
    window.citypathDeck = deck;   // for tests and debugging (e.g. no layer is pickable to deck.gl)
  } else if (newComparison && a.refit) {
    deck.setProps({ initialViewState: { ...a.static.initialViewState, transitionDuration: 0 } });
  }
  const echo = !newComparison && state.reported.has(a.step);
  if (newComparison || (a.step !== state.argsStep && !echo)) {
    // A new question, or Python moved the step (a link, a new route): show what it says, paused. Not the
    // echo of a step this player reported: the user may have moved on since (no jump back).
    if (newComparison) state.reported.clear();
    if (state.playing) stop(false);
    state.speed = SPEEDS.includes(a.speed) ? a.speed : 1;
    state.id = a.id;
    state.argsStep = a.step;
    state.basemapFailed = false;
    state.fade = null;
    show(a.step || state.nFrames || 1, { fade: false });
  } else {
    state.argsStep = a.step;
    show(state.step, { fade: false });   // more models arrived, or an echo: keep the shown step and playback
  }
  for (const input of [$("from"), $("to")]) {
    if (document.activeElement !== input) input.value = endLabel(input);
  }
  renderNotes();
  resize();
  // Models still being computed: ask for the next one (once per state of the comparison). Each request
  // computes one model on the server and sends the player again, so each route appears when it is ready.
  const waiting = (a.pending || []).join("|");
  if (waiting && state.askedFor !== `${a.id}|${waiting}`) {
    state.askedFor = `${a.id}|${waiting}`;
    report({ more: true });
  }
}

function setup() {
  $("play").onclick = () => (state.playing ? stop() : play());
  $("back").onclick = () => { stop(false); show(state.step - 1); report(); };
  $("next").onclick = () => { stop(false); show(state.step + 1); report(); };
  $("step").oninput = (e) => { if (state.playing) stop(false); show(Number(e.target.value), { fade: false }); };
  $("step").onchange = () => report();
  $("speed").innerHTML = SPEEDS.map((s) => `<option value="${s}">${s} steps/s</option>`).join("");
  $("speed").onchange = (e) => {
    state.speed = Number(e.target.value);
    if (!state.playing) report();      // while playing, the new speed is reported when it stops
  };
  document.addEventListener("keydown", (e) => {
    if (e.target && (e.target.tagName === "SELECT" || e.target.type === "text")) return;
    if (e.key === " ") { e.preventDefault(); $("play").click(); }
    if (e.key === "ArrowLeft") $("back").click();
    if (e.key === "ArrowRight") $("next").click();
  });
  setupPicker($("from"));
  setupPicker($("to"));
  // mousedown, not click: it comes before the box loses focus.
  $("suggest").addEventListener("mousedown", (e) => {
    const li = e.target.closest("li[data-n]");
    e.preventDefault();
    if (li && picker.input) choose(picker.input, Number(li.dataset.n));
  });
  link.onRender(render);   // at once with the arguments boot.js has, then every render
  new ResizeObserver(resize).observe(document.getElementById("root"));
  // The charts are drawn to the frame's width: again when it changes.
  new ResizeObserver(() => { if ($("charts").clientWidth !== charts.width && state.args) renderCharts(); })
    .observe($("charts"));
  // A layer's data (the cities and outlines by URL) can arrive after the last redraw: look again.
  const poll = setInterval(() => {
    markPainted();
    const marks = window.citypathPaint;
    const failed = [...downloads.values()].some((d) => d.error);
    if (marks.routes !== undefined && (marks.cities !== undefined || failed)) clearInterval(poll);
  }, 50);
}

setup();
