// Picking from the layers' own data, on the CPU: the city under a click, the object under the cursor (its
// tooltip and a ring round a city), with no deck.gl picking pass.
//
// deck.gl picks by drawing every pickable layer again into an off-screen buffer and reading the pixel back:
// in a browser without GPU acceleration (SwiftShader) that took 0.8-1.3 s per press, and a press that long is
// no longer a click to deck.gl's gestures, so a click on the map never reached the server. Here the layers
// stay defined by the server's pydeck spec ("pickable" there means "has a tooltip, takes clicks"), deck.gl is
// told none is pickable, and what is under the cursor is found by projecting the layers' data (cached per
// view) and measuring distances in screen pixels: ~21k cities take a few ms.

import { ScatterplotLayer } from "@deck.gl/layers";

const CLICK_SLACK_PX = 6;   // a click this far outside a city's dot still picks it (the nearest one)
const HOVER_SLACK_PX = 2;   // the tooltip's tolerance around what is drawn
const DRAG_PX = 5;          // a press that moved further is a pan of the map, not a click
const RING_RGBA = [17, 17, 17, 200];

const tipped = new Set();   // ids of the layers the spec made pickable: what this picker looks in

/** A layer's deck.gl JSON with deck.gl's picking off; the picker remembers that the spec made it pickable. */
export function pickedOnCpu(json) {
  if (!json || !json.pickable) return json;
  tipped.add(json.id);
  return { ...json, pickable: false, autoHighlight: false };
}

const value = (accessor, d, i, fallback) =>
  (typeof accessor === "function" ? accessor(d, { index: i, data: null, target: [] }) : accessor) ?? fallback;

function pixelsPerMeter(viewport) {
  const scales = viewport.getDistanceScales ? viewport.getDistanceScales() : viewport.distanceScales;
  return scales.unitsPerMeter[0] * viewport.scale;
}

// Projected positions per (data, view): computed on the first hover or click after the view changes.
const projected = new WeakMap();   // data array -> {viewport, layerName, xy | lines}

function project(layer, viewport) {
  const data = layer.props.data;
  const name = layer.constructor.layerName;
  const have = projected.get(data);
  if (have && have.layerName === name && (have.viewport === viewport || have.viewport.equals(viewport))) return have;
  const p = layer.props;
  const out = { viewport, layerName: name };
  if (name === "ScatterplotLayer") {
    out.xy = new Float64Array(data.length * 2);
    data.forEach((d, i) => {
      const [x, y] = viewport.project(value(p.getPosition, d, i, [0, 0]));
      out.xy[2 * i] = x;
      out.xy[2 * i + 1] = y;
    });
  } else if (name === "PathLayer") {
    out.lines = data.map((d, i) => (value(p.getPath, d, i, []) || []).map((q) => viewport.project(q)));
  } else if (name === "LineLayer") {
    out.lines = data.map((d, i) => [viewport.project(value(p.getSourcePosition, d, i, [0, 0])),
                                    viewport.project(value(p.getTargetPosition, d, i, [0, 0]))]);
  } else {
    return null;
  }
  projected.set(data, out);
  return out;
}

function dotRadiusPx(p, d, i, perMeter) {
  const r = value(p.getRadius, d, i, 1) * (p.radiusScale ?? 1);
  const px = p.radiusUnits === "pixels" ? r : r * perMeter;
  return Math.min(Math.max(px, p.radiusMinPixels ?? 0), p.radiusMaxPixels ?? Infinity);
}

function lineHalfWidthPx(p, d, i, perMeter) {
  const w = value(p.getWidth, d, i, 1) * (p.widthScale ?? 1);
  const px = p.widthUnits === "pixels" ? w : w * perMeter;
  return Math.min(Math.max(px, p.widthMinPixels ?? 0), p.widthMaxPixels ?? Infinity) / 2;
}

function segmentDistance(x, y, [ax, ay], [bx, by]) {
  const dx = bx - ax, dy = by - ay;
  const t = dx || dy ? Math.max(0, Math.min(1, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy))) : 0;
  return Math.hypot(x - ax - t * dx, y - ay - t * dy);
}

/** The nearest object of `layer` within its drawn size + `slack` px of (x, y): {object, index, distance}. */
function nearestIn(layer, viewport, x, y, slack, accept = () => true) {
  const data = layer.props.data;
  if (!Array.isArray(data) || !data.length) return null;
  const proj = project(layer, viewport);
  if (!proj) return null;
  const p = layer.props, perMeter = pixelsPerMeter(viewport);
  let best = null;
  const consider = (i, distance, reach) => {
    if (distance <= reach && (!best || distance < best.distance) && accept(data[i])) {
      best = { object: data[i], index: i, distance };
    }
  };
  if (proj.xy) {
    const { xy } = proj;
    for (let i = 0; i < data.length; i += 1) {
      const dx = xy[2 * i] - x, dy = xy[2 * i + 1] - y;
      if (Math.abs(dx) > 60 || Math.abs(dy) > 60) continue;   // no dot is drawn that large
      consider(i, Math.hypot(dx, dy), dotRadiusPx(p, data[i], i, perMeter) + slack);
    }
  } else {
    proj.lines.forEach((pts, i) => {
      let d = Infinity;
      for (let j = 1; j < pts.length; j += 1) d = Math.min(d, segmentDistance(x, y, pts[j - 1], pts[j]));
      consider(i, d, lineHalfWidthPx(p, data[i], i, perMeter) + slack);
    });
  }
  return best;
}

function pickableLayers(deck) {
  return (deck.props.layers || []).filter((l) => l && tipped.has(l.id) && l.props.visible !== false
                                          && (l.props.opacity ?? 1) > 0.05);
}

const isCity = (o) => o && o.id !== undefined && o.id !== null && Number.isFinite(Number(o.id));

/** The city nearest to (x, y) (px in the map) among every drawn layer whose objects are cities (they carry
 *  an `id`: all cities, the endpoints, each route's hops), if one is within its dot + a few px; else null. */
export function cityAt(deck, x, y) {
  const viewport = deck.getViewports()[0];
  if (!viewport) return null;
  let best = null;
  for (const layer of pickableLayers(deck)) {
    if (layer.constructor.layerName !== "ScatterplotLayer") continue;
    const hit = nearestIn(layer, viewport, x, y, CLICK_SLACK_PX, isCity);
    if (hit && (!best || hit.distance < best.distance)) best = { ...hit, layer };
  }
  return best && { id: Number(best.object.id), object: best.object, layer: best.layer.id };
}

/** What is drawn under (x, y), topmost layer first, as GPU picking would find it: {object, layer} or null. */
export function objectAt(deck, x, y) {
  const viewport = deck.getViewports()[0];
  if (!viewport) return null;
  const layers = pickableLayers(deck);
  for (let n = layers.length - 1; n >= 0; n -= 1) {
    const hit = nearestIn(layers[n], viewport, x, y, HOVER_SLACK_PX);
    if (hit) return { object: hit.object, layer: layers[n].id };
  }
  return null;
}

const hover = { object: null, ring: [] };

/** The ring round the city under the cursor (drawn over the map by the player), or nothing. */
export function hoverLayers() {
  return hover.ring;
}

function position(deck, element, e) {
  const box = ((deck.getCanvas && deck.getCanvas()) || element).getBoundingClientRect();
  return [e.clientX - box.left, e.clientY - box.top];
}

/**
 * Clicks and hovering on `element` (the map) answered from the data: `onCity(id)` for a click on a city (not
 * after a pan, nor the second click of a double click, which zooms); a tooltip with the object's `tip`; and
 * `redraw()` when the ring round the hovered city changes.
 */
export function attach(deck, element, { onCity, redraw }) {
  const tip = document.createElement("div");
  tip.id = "tooltip";
  Object.assign(tip.style, { position: "absolute", zIndex: 5, pointerEvents: "none", display: "none",
                             backgroundColor: "#1f2937", color: "white", fontSize: "12px", padding: "4px 8px",
                             borderRadius: "4px", whiteSpace: "pre", maxWidth: "420px" });
  element.appendChild(tip);
  let down = null, queued = null, dragging = false;

  const setHover = (hit, x, y) => {
    const object = hit ? hit.object : null;
    if (object && object.tip) {
      tip.textContent = object.tip;
      tip.style.display = "block";
      const w = element.clientWidth;
      tip.style.left = `${Math.min(x + 12, Math.max(0, w - tip.offsetWidth - 4))}px`;
      tip.style.top = `${y + 14}px`;
    } else {
      tip.style.display = "none";
    }
    if (object === hover.object) return;
    hover.object = object;
    const ring = isCity(object) && object.p ? [object] : [];
    if (ring.length || hover.ring.length) {
      hover.ring = ring.length ? [new ScatterplotLayer({
        id: "hover-ring", data: ring, getPosition: (d) => d.p, radiusUnits: "pixels", getRadius: 7,
        filled: false, stroked: true, lineWidthUnits: "pixels", getLineWidth: 2, getLineColor: RING_RGBA,
        pickable: false })] : [];
      redraw();
    }
  };
  // deck.gl asks for the cursor every frame: a hand over a city, which a click would pick.
  deck.setProps({ getCursor: ({ isDragging }) => (isDragging ? "grabbing" : isCity(hover.object) ? "pointer" : "grab") });

  element.addEventListener("pointermove", (e) => {
    dragging = e.buttons !== 0;
    if (dragging) { setHover(null); return; }
    const at = position(deck, element, e);
    if (queued) { queued.at = at; return; }
    queued = { at };
    requestAnimationFrame(() => {
      const [x, y] = queued.at;
      queued = null;
      if (!dragging) setHover(objectAt(deck, x, y), x, y);
    });
  });
  element.addEventListener("pointerleave", () => { dragging = false; setHover(null); });
  element.addEventListener("wheel", () => setHover(null), { passive: true });
  element.addEventListener("pointerdown", (e) => { down = [e.clientX, e.clientY]; setHover(null); }, true);
  element.addEventListener("click", (e) => {
    const moved = down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) > DRAG_PX;
    down = null;
    if (moved || e.detail > 1) return;
    const [x, y] = position(deck, element, e);
    const city = cityAt(deck, x, y);
    if (city) onCity(city.id);
  }, true);
}
