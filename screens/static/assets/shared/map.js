// The screens' maps: Leaflet (vendored under /assets/vendor/leaflet, loaded by the page
// with <script src>, so `L` is a global) on the city's basemap.
//
//   const map = createMap(element, config, {label: "Map of open work"});
//
// `config` is /api/v1/app-config. The map opens on the service area's bounds.

/** Colours that stay apart for colour-blind readers and on a sunlit screen (Okabe–Ito). */
export const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

export function createMap(element, config, { label, zoomControl = true } = {}) {
  if (!window.L) throw new Error("Leaflet is not loaded: add <script src=\"/assets/vendor/leaflet/leaflet.js\"> to the page");
  element.classList.add("map");
  if (label) {
    element.setAttribute("role", "region");
    element.setAttribute("aria-label", label);
  }
  const map = L.map(element, { zoomControl, attributionControl: true });
  map.attributionControl.setPrefix(false);
  const b = config && config.bounds;
  if (b) map.fitBounds([[b[1], b[0]], [b[3], b[2]]], { padding: [16, 16] });
  else map.setView([0, 0], 2);
  return map;
}
