// The screens' maps: Leaflet (vendored under /assets/vendor/leaflet, loaded by the page
// with <script src>, so `L` is a global) on the city's basemap.
//
//   const map = createMap(element, config, {label: "Map of open work", t});
//
// `config` is /api/v1/app-config. The map opens on the service area's bounds. Its basemap
// is `config.basemap`: StreetLoop's own vector tiles (cut from the city's OSM extract,
// drawn on canvas by protomaps-leaflet, vendored under /assets/vendor/protomaps-leaflet
// and loaded by the page after leaflet.js), or the city's own tile server (vector or
// raster). Without either, the map has a plain background and says so: no errors.
// `t` (optional) is the app's translator; the note uses its key "map.no_basemap".

import { h } from "./dom.js";

/** Colours that stay apart for colour-blind readers and on a sunlit screen (Okabe–Ito). */
export const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

// Beyond the tiles' own deepest zoom the map draws them larger, down to a house's door.
const MAX_MAP_ZOOM = 19;
const OSM_COPYRIGHT = "https://www.openstreetmap.org/copyright";
const OSM_CREDIT = "OpenStreetMap contributors";

export function createMap(element, config, { label, zoomControl = true, t } = {}) {
  if (!window.L) throw new Error("Leaflet is not loaded: add <script src=\"/assets/vendor/leaflet/leaflet.js\"> to the page");
  element.classList.add("map");
  if (label) {
    element.setAttribute("role", "region");
    element.setAttribute("aria-label", label);
  }
  // Leaflet's own attribution control writes its text as HTML; ours is built as text
  // (the credit is a setting), so Leaflet's is off and ours is always there.
  const map = L.map(element, { zoomControl, attributionControl: false, maxZoom: MAX_MAP_ZOOM });
  addBasemap(map, element, (config && config.basemap) || { available: false }, t);
  const b = config && config.bounds;
  if (b) map.fitBounds([[b[1], b[0]], [b[3], b[2]]], { padding: [16, 16] });
  else map.setView([0, 0], 2);
  return map;
}

function addBasemap(map, element, basemap, t) {
  const vector = basemap.kind === "vector";
  if (!basemap.available || !basemap.url || (vector && !window.protomapsL)) {
    if (basemap.available && vector) {
      // A page that forgot the script: the map still works, and the developer is told.
      console.warn("protomaps-leaflet is not loaded: add <script src=\"/assets/vendor/protomaps-leaflet/protomaps-leaflet.js\"> after leaflet.js");
    }
    element.classList.add("map-plain");
    const text = t ? t("map.no_basemap") : "No street map: the basemap has not been built.";
    map.addControl(new (textControl("map-note", "bottomleft", [text]))());
    return;
  }
  const maxZoom = basemap.max_zoom || MAX_MAP_ZOOM;
  const bounds = basemap.bounds ? [[basemap.bounds[1], basemap.bounds[0]], [basemap.bounds[3], basemap.bounds[2]]] : undefined;
  let layer;
  if (vector) {
    element.classList.add("map-vector");
    // protomaps-leaflet draws each tile over 512 pixels: a map at zoom z asks for the
    // tiles of z - 1, so max_zoom 17 is sharp down to zoom 18, and larger beyond.
    layer = protomapsL.leafletLayer({
      url: basemap.url,
      maxDataZoom: maxZoom,
      maxZoom: MAX_MAP_ZOOM,
      // Outside what was imported there is nothing to ask for.
      bounds,
      paintRules: paintRules(protomapsL),
      labelRules: labelRules(protomapsL),
      backgroundColor: STYLE.background,
      // Empty, so protomaps-leaflet's own HTML credit is not used (ours is below).
      attribution: "",
    });
  } else {
    layer = L.tileLayer(basemap.url, { maxNativeZoom: maxZoom, maxZoom: MAX_MAP_ZOOM, bounds, attribution: "" });
  }
  layer.addTo(map);
  map.addControl(new (textControl("map-attribution", "bottomright", credit(basemap.attribution)))());
}

/** The credit as text, with "OpenStreetMap contributors" linked to OSM's copyright page. */
function credit(attribution) {
  const text = attribution || `© ${OSM_CREDIT}`;
  const at = text.indexOf(OSM_CREDIT);
  if (at < 0) return [text];
  return [text.slice(0, at), h("a", { href: OSM_COPYRIGHT, target: "_blank", rel: "noopener" }, OSM_CREDIT),
    text.slice(at + OSM_CREDIT.length)].filter((part) => part !== "");
}

function textControl(className, position, children) {
  return L.Control.extend({
    options: { position },
    onAdd() {
      const box = h("div", { class: `leaflet-control ${className}` }, ...children);
      L.DomEvent.disableClickPropagation(box);
      return box;
    },
  });
}

// -- the style of the offline basemap ------------------------------------------------
// Light and quiet, so the work, crews and routes drawn on top (PALETTE) stand out: pale
// land, soft greens and blues, white streets with grey casings, dark names with a white
// halo that stay readable in sunlight. Layers and kinds are those of geo/basemap.py.

const STYLE = {
  background: "#f4f1ec",
  water: "#aacde9",
  waterLine: "#7fb3dc",
  building: "#e0d9d0",
  buildingLine: "#c9bfb3",
  casing: "#b9afa3",
  street: "#ffffff",
  major: "#fbe3a2",
  motorway: "#f5bf8f",
  path: "#8c7c6a",
  rail: "#8a8580",
  label: "#2b2b2b",
  halo: "#ffffff",
};
const LAND = {
  park: "#cfe9c1", pitch: "#bfe3b0", grass: "#dcedcb", wood: "#bcd9a9", scrub: "#d3e4bf",
  cemetery: "#d2dfcc", farmland: "#eef0d8", residential: "#ece8e2", commercial: "#f1e4e1",
  industrial: "#e9e2ea", rock: "#e3dfd9", glacier: "#e9f4fa", sand: "#f4ecca", wetland: "#d6e8e1",
};

// Widths in pixels per zoom, by road kind: [zoom, width] stops, exponential between.
const WIDTHS = {
  motorway: [[6, 1], [12, 3], [16, 10], [19, 24]],
  trunk: [[6, 0.8], [12, 2.6], [16, 9], [19, 22]],
  primary: [[8, 0.6], [12, 2.2], [16, 8], [19, 20]],
  secondary: [[9, 0.5], [12, 1.8], [16, 7], [19, 18]],
  tertiary: [[11, 0.6], [13, 1.6], [16, 6], [19, 16]],
  minor: [[12, 0.4], [14, 1.4], [16, 4.5], [19, 12]],
  pedestrian: [[13, 0.6], [16, 4], [19, 10]],
  service: [[14, 0.6], [16, 2.5], [19, 7]],
  track: [[14, 0.6], [16, 1.2], [19, 2.5]],
  path: [[14, 0.5], [16, 1], [19, 2]],
};
const ROAD_ORDER = ["service", "pedestrian", "minor", "tertiary", "secondary", "primary", "trunk", "motorway"];

function kindIs(...kinds) {
  return (z, f) => kinds.includes(f.props.kind);
}

function paintRules(P) {
  const width = (kind, extra = 0) => {
    const w = P.exp(1.6, WIDTHS[kind]);
    return (z) => w(z) + extra;
  };
  const fill = { major: ["primary", "trunk", "secondary"], motorway: ["motorway"] };
  const roadColour = (kind) => (fill.motorway.includes(kind) ? STYLE.motorway : fill.major.includes(kind) ? STYLE.major : STYLE.street);
  return [
    ...Object.entries(LAND).map(([kind, colour]) => ({
      dataLayer: "landuse", filter: kindIs(kind), symbolizer: new P.PolygonSymbolizer({ fill: colour }),
    })),
    { dataLayer: "water", symbolizer: new P.PolygonSymbolizer({ fill: STYLE.water }) },
    { dataLayer: "waterways", filter: kindIs("river", "canal"), symbolizer: new P.LineSymbolizer({ color: STYLE.waterLine, width: P.exp(1.6, [[8, 1], [14, 4], [18, 12]]) }) },
    { dataLayer: "waterways", filter: kindIs("stream"), symbolizer: new P.LineSymbolizer({ color: STYLE.waterLine, width: P.exp(1.6, [[13, 0.6], [16, 1.5], [19, 3]]) }) },
    { dataLayer: "waterways", filter: kindIs("coastline"), symbolizer: new P.LineSymbolizer({ color: STYLE.waterLine, width: 1.2 }) },
    { dataLayer: "buildings", symbolizer: new P.PolygonSymbolizer({ fill: STYLE.building, stroke: STYLE.buildingLine, width: 0.6 }) },
    { dataLayer: "roads", filter: kindIs("path"), symbolizer: new P.LineSymbolizer({ color: STYLE.path, width: width("path"), dash: [3, 2], dashColor: STYLE.path }) },
    { dataLayer: "roads", filter: kindIs("track"), symbolizer: new P.LineSymbolizer({ color: STYLE.path, width: width("track"), dash: [5, 2], dashColor: STYLE.path }) },
    // Casings first, for every kind, then the fills on top: crossings stay clean.
    ...ROAD_ORDER.map((kind) => ({
      dataLayer: "roads", minzoom: 12, filter: kindIs(kind),
      symbolizer: new P.LineSymbolizer({ color: STYLE.casing, width: width(kind, 2.5), lineCap: "round", lineJoin: "round" }),
    })),
    ...ROAD_ORDER.map((kind) => ({
      dataLayer: "roads", filter: kindIs(kind),
      // Below zoom 12 there are no casings: grey minor streets on the pale land.
      symbolizer: new P.LineSymbolizer({ color: (z) => (z < 12 && roadColour(kind) === STYLE.street ? STYLE.casing : roadColour(kind)), width: width(kind), lineCap: "round", lineJoin: "round" }),
    })),
    { dataLayer: "railways", symbolizer: new P.LineSymbolizer({ color: STYLE.rail, width: P.exp(1.6, [[9, 1], [16, 2.5], [19, 4]]), dash: [6, 3], dashColor: STYLE.rail }) },
  ];
}

function labelRules(P) {
  const text = { fill: STYLE.label, stroke: STYLE.halo, width: 3 };
  const place = { ...text, lineHeight: 1.25 };
  return [
    { dataLayer: "places", filter: kindIs("city", "town"), symbolizer: new P.CenteredTextSymbolizer({ ...place, font: "600 15px sans-serif" }) },
    { dataLayer: "places", filter: kindIs("village", "suburb"), symbolizer: new P.CenteredTextSymbolizer({ ...place, font: "600 13px sans-serif" }) },
    { dataLayer: "places", filter: kindIs("hamlet", "neighbourhood"), symbolizer: new P.CenteredTextSymbolizer({ ...place, font: "12px sans-serif" }) },
    { dataLayer: "roads", minzoom: 13, filter: kindIs("motorway", "trunk", "primary", "secondary", "tertiary"),
      symbolizer: new P.LineLabelSymbolizer({ ...text, font: "600 12px sans-serif" }) },
    { dataLayer: "roads", minzoom: 15, filter: kindIs("minor", "pedestrian", "service"),
      symbolizer: new P.LineLabelSymbolizer({ ...text, font: "12px sans-serif" }) },
    { dataLayer: "waterways", minzoom: 14, filter: kindIs("river", "canal"),
      symbolizer: new P.LineLabelSymbolizer({ fill: "#1f5f8f", stroke: STYLE.halo, width: 3, font: "italic 12px sans-serif" }) },
  ];
}

/**
 * The URLs of StreetLoop's own basemap tiles that cover `points` ([{lat, lon}]) with a
 * margin, at the data zooms a map from street level (data zoom 13) to the deepest uses: what a
 * phone keeps to show its day's map offline. Empty for a city tile server on another
 * origin (a service worker cannot keep those) or without a basemap; at most `limit`.
 */
export function tileUrlsAround(config, points, { marginM = 800, fromZoom = 13, limit = 600 } = {}) {
  const basemap = config && config.basemap;
  if (!basemap || !basemap.available || !basemap.url || !points.length) return [];
  const template = new URL(basemap.url, location.origin);
  if (template.origin !== location.origin) return [];
  const toZoom = basemap.max_zoom || fromZoom;
  const pad = marginM / 111_320;
  const lats = points.map((p) => p.lat);
  const lons = points.map((p) => p.lon);
  const meanLat = lats.reduce((a, b) => a + b, 0) / lats.length;
  const padLon = pad / Math.max(0.1, Math.cos((meanLat * Math.PI) / 180));
  const [south, north] = [Math.min(...lats) - pad, Math.max(...lats) + pad];
  const [west, east] = [Math.min(...lons) - padLon, Math.max(...lons) + padLon];
  const urls = [];
  for (let z = fromZoom; z <= toZoom; z += 1) {
    const [x0, y0] = tileOf(north, west, z);
    const [x1, y1] = tileOf(south, east, z);
    for (let x = x0; x <= x1; x += 1) {
      for (let y = y0; y <= y1; y += 1) {
        if (urls.length >= limit) return urls;
        urls.push(decodeURI(template.pathname + template.search).replace("{z}", z).replace("{x}", x).replace("{y}", y));
      }
    }
  }
  return urls;
}

function tileOf(lat, lon, z) {
  const n = 2 ** z;
  const rad = (Math.max(-85.05, Math.min(85.05, lat)) * Math.PI) / 180;
  const x = Math.floor(((lon + 180) / 360) * n);
  const y = Math.floor(((1 - Math.log(Math.tan(rad) + 1 / Math.cos(rad)) / Math.PI) / 2) * n);
  return [Math.min(n - 1, Math.max(0, x)), Math.min(n - 1, Math.max(0, y))];
}
