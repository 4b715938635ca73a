// citypath's player, first part (a few KB, loaded before anything else in the player's frame).
//
// 1. The link to Streamlit: the component protocol (componentReady, render, setFrameHeight,
//    setComponentValue) as `window.citypathLink`. streamlit-component-lib speaks the same messages but
//    bundles Apache Arrow for dataframe arguments, which the player never gets (~180 KB of its bundle).
// 2. A still preview of the map as soon as the first arguments arrive: the same pydeck layers (outlines,
//    optimal path, the routes of the step shown, endpoints and labels), drawn on a 2D canvas in deck.gl's
//    Web Mercator view. Only then is the player itself (deck.gl, ~1 MB) loaded; it draws the map again,
//    interactive, and removes the preview once every layer it draws has its data.

const marks = (window.citypathPaint = window.citypathPaint || {});
marks.boot = Date.now();

const link = {
  last: null,           // the last render message: {args, disabled, theme}
  listeners: [],
  height: undefined,
  send(type, data) {
    window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
  },
  setFrameHeight(height) {
    if (height === this.height) return;
    this.height = height;
    this.send("streamlit:setFrameHeight", { height });
  },
  setComponentValue(value) {
    this.send("streamlit:setComponentValue", { value, dataType: "json" });
  },
  onRender(callback) {
    // `callback({args, disabled, theme})` for every render from now on, and at once for the last one.
    this.listeners.push(callback);
    if (this.last) callback(this.last);
  },
};
window.citypathLink = link;

let themed = false;
function applyTheme(theme) {
  if (!theme || themed) return;
  themed = true;
  const style = document.createElement("style");
  style.textContent = `:root { --primary-color: ${theme.primaryColor}; --text-color: ${theme.textColor};
    --background-color: ${theme.backgroundColor}; --font: ${theme.font}; } body { color: var(--text-color); }`;
  document.head.appendChild(style);
}

let playerLoading = false;
window.addEventListener("message", (event) => {
  const data = event.data;
  if (!data || data.type !== "streamlit:render") return;
  link.last = { args: data.args || {}, disabled: Boolean(data.disabled), theme: data.theme };
  applyTheme(data.theme);
  if (marks.args === undefined) marks.args = Date.now();
  if (!playerLoading) preview(link.last.args);
  for (const callback of link.listeners) callback(link.last);
});
link.send("streamlit:componentReady", { apiVersion: 1 });

// -- the still preview ----------------------------------------------------------------------------------
const TILE_SIZE = 512;              // deck.gl's world: 512 px at zoom 0
const EARTH_CIRCUMFERENCE_M = 40075016.686;

function mercator(view, width, height) {
  const scale = TILE_SIZE * 2 ** view.zoom;
  const x = (lon) => ((lon + 180) / 360) * scale;
  const y = (lat) => {
    const s = Math.sin((Math.max(-85.05, Math.min(85.05, lat)) * Math.PI) / 180);
    return (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * scale;
  };
  const cx = x(view.longitude), cy = y(view.latitude);
  return {
    at: (p) => [width / 2 + x(p[0]) - cx, height / 2 + y(p[1]) - cy],
    pixelsPerMeter: scale / (EARTH_CIRCUMFERENCE_M * Math.cos((view.latitude * Math.PI) / 180)),
  };
}

function accessor(value, fallback) {
  // pydeck's accessors as deck.gl's JSON converter reads them: "@@=field" or a constant.
  if (value === undefined) return () => fallback;
  if (typeof value === "string" && value.startsWith("@@=")) {
    const field = value.slice(3);
    return /^\w+$/.test(field) ? (d) => d[field] : null;    // an expression the preview does not evaluate
  }
  return () => value;
}

function rgba(c, opacity) {
  if (!Array.isArray(c)) return null;
  const a = (c.length > 3 ? c[3] / 255 : 1) * opacity;
  return `rgba(${c[0]},${c[1]},${c[2]},${a})`;
}

function pixels(width, units, px, minPixels = 0, maxPixels = Infinity) {
  const w = units === "pixels" ? width : width * px;
  return Math.max(minPixels, Math.min(maxPixels, w));
}

function line(ctx, at, points) {
  ctx.beginPath();
  points.forEach((p, i) => { const [x, y] = at(p); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
}

const DRAW = {
  PolygonLayer(ctx, l, data, v, op) {
    const polygon = accessor(l.getPolygon), fill = accessor(l.getFillColor, [0, 0, 0, 255]);
    const stroke = accessor(l.getLineColor, [0, 0, 0, 255]), width = accessor(l.getLineWidth, 1);
    if (!polygon) return;
    for (const d of data) {
      const rings = polygon(d);
      if (!Array.isArray(rings) || !rings.length) continue;
      ctx.beginPath();
      for (const ring of Array.isArray(rings[0][0]) ? rings : [rings]) {
        ring.forEach((p, i) => { const [x, y] = v.at(p); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
        ctx.closePath();
      }
      if (l.filled !== false) { ctx.fillStyle = rgba(fill(d), op); ctx.fill("evenodd"); }
      if (l.stroked) {
        ctx.strokeStyle = rgba(stroke(d), op);
        ctx.lineWidth = pixels(width(d), l.lineWidthUnits, v.pixelsPerMeter, l.lineWidthMinPixels);
        ctx.stroke();
      }
    }
  },
  PathLayer(ctx, l, data, v, op) {
    const path = accessor(l.getPath), color = accessor(l.getColor, [0, 0, 0, 255]), width = accessor(l.getWidth, 1);
    if (!path) return;
    ctx.lineJoin = l.jointRounded ? "round" : "miter";
    ctx.lineCap = l.capRounded ? "round" : "butt";
    // A model's line pattern (PathStyleExtension's getDashArray: dash and gap in line widths), as deck.gl draws it.
    const dash = Array.isArray(l.getDashArray) && l.extensions ? l.getDashArray : null;
    for (const d of data) {
      const points = path(d);
      if (!Array.isArray(points) || points.length < 2) continue;
      line(ctx, v.at, points);
      ctx.strokeStyle = rgba(color(d), op);
      ctx.lineWidth = pixels(width(d), l.widthUnits, v.pixelsPerMeter, l.widthMinPixels, l.widthMaxPixels);
      ctx.setLineDash(dash ? dash.map((x) => x * ctx.lineWidth) : []);
      ctx.stroke();
    }
    ctx.setLineDash([]);
  },
  LineLayer(ctx, l, data, v, op) {
    const a = accessor(l.getSourcePosition), b = accessor(l.getTargetPosition);
    const color = accessor(l.getColor, [0, 0, 0, 255]), width = accessor(l.getWidth, 1);
    if (!a || !b) return;
    ctx.lineCap = "butt";
    for (const d of data) {
      line(ctx, v.at, [a(d), b(d)]);
      ctx.strokeStyle = rgba(color(d), op);
      ctx.lineWidth = pixels(width(d), l.widthUnits, v.pixelsPerMeter, l.widthMinPixels, l.widthMaxPixels);
      ctx.stroke();
    }
  },
  ScatterplotLayer(ctx, l, data, v, op) {
    const position = accessor(l.getPosition), radius = accessor(l.getRadius, 1);
    const fill = accessor(l.getFillColor, [0, 0, 0, 255]), stroke = accessor(l.getLineColor, [0, 0, 0, 255]);
    if (!position) return;
    for (const d of data) {
      const [x, y] = v.at(position(d));
      const r = pixels(radius(d), l.radiusUnits, v.pixelsPerMeter, l.radiusMinPixels, l.radiusMaxPixels);
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      if (l.filled !== false) { ctx.fillStyle = rgba(fill(d), op); ctx.fill(); }
      if (l.stroked) {
        ctx.strokeStyle = rgba(stroke(d), op);
        ctx.lineWidth = Math.max(l.lineWidthMinPixels || 0, 1);
        ctx.stroke();
      }
    }
  },
  TextLayer(ctx, l, data, v, op) {
    const position = accessor(l.getPosition), text = accessor(l.getText), size = accessor(l.getSize, 32);
    const color = accessor(l.getColor, [0, 0, 0, 255]), offset = accessor(l.getPixelOffset, [0, 0]);
    if (!position || !text) return;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.lineJoin = "round";
    for (const d of data) {
      const [x, y] = v.at(position(d));
      const [dx, dy] = offset(d);
      ctx.font = `${l.fontWeight || "normal"} ${size(d)}px "Source Sans Pro", system-ui, sans-serif`;
      if (l.outlineWidth) {
        ctx.strokeStyle = rgba(l.outlineColor || [0, 0, 0, 255], op);
        ctx.lineWidth = l.outlineWidth;
        ctx.strokeText(String(text(d)), x + dx, y + dy);
      }
      ctx.fillStyle = rgba(color(d), op);
      ctx.fillText(String(text(d)), x + dx, y + dy);
    }
  },
};

function drawLayers(ctx, layers, view, width, height) {
  // The layers (deck.gl JSON) that have their data inline, in order; returns the ids drawn.
  const v = mercator(view, width, height);
  const drawn = [];
  for (const l of layers) {
    const draw = DRAW[l["@@type"]];
    if (!draw || !Array.isArray(l.data) || l.visible === false) continue;
    ctx.save();
    draw(ctx, l, l.data, v, l.opacity ?? 1);
    ctx.restore();
    drawn.push(l.id);
  }
  return drawn;
}

function routeLayers(a) {
  const step = a.step || a.n_frames || 1;
  if (Array.isArray(a.frames)) return a.frames[step - 1] || [];
  return a.first_frame && a.first_frame.step === step ? a.first_frame.layers : [];
}

function preview(a) {
  // Whatever happens to the preview, the player loads.
  try {
    drawPreview(a);
  } catch (e) {
    console.error("citypath: no preview of the map", e);
    loadPlayer();
  }
}

function drawPreview(a) {
  const map = document.getElementById("map");
  if (!map || !a.static || !a.static.initialViewState) { loadPlayer(); return; }
  const height = a.height || 560;
  map.style.height = `${height}px`;
  const width = map.clientWidth || 800;
  let canvas = document.getElementById("preview");
  if (!canvas) {
    canvas = document.createElement("canvas");
    canvas.id = "preview";
    canvas.setAttribute("aria-hidden", "true");
    canvas.style.cssText = "position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none";
    map.appendChild(canvas);
  }
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  const routes = routeLayers(a);
  const drawn = drawLayers(ctx, [...(a.static.bottom || []), ...routes, ...(a.static.top || [])],
                           a.static.initialViewState, width, height);
  link.setFrameHeight(document.getElementById("root").scrollHeight);
  const models = a.models || [];
  const withRoutes = models.length > 0 && !(a.pending || []).length && routes.length > 0;
  // Marked at the next frame (the canvas is painted with it); then the player is loaded.
  requestAnimationFrame(() => {
    if (marks.previewMap === undefined && drawn.includes("optimal")) marks.previewMap = Date.now();
    if (marks.previewRoutes === undefined && withRoutes) marks.previewRoutes = Date.now();
    document.body.dataset.preview = withRoutes ? "routes" : "map";
    setTimeout(loadPlayer, 0);
  });
}

function loadPlayer() {
  if (playerLoading) return;
  playerLoading = true;
  const script = document.createElement("script");
  script.src = "./player.js";
  document.body.appendChild(script);
}
