// The intake desk: a 311 call-taker takes a resident's call. They find the place from what
// the caller says (the address index as they type, or a click on the map), see the open
// reports of that kind nearby before making a duplicate, ask the kind's questions, and
// record it through POST /requests, the same intake as Open311 (a duplicate joins, the SLA
// starts). Then they read the confirmation number back. The second part answers "what
// happened to my report?" from that number, in the words of the resident's status page,
// which the API sends (the desk keeps no table of status words of its own).
//
//   #/intake                   a new report
//   #/intake/lookup[/<number>] a report looked up by its confirmation number
import { ApiError, NetworkError } from "/assets/shared/api.js";
import { announce, h, replace } from "/assets/shared/dom.js";
import { PALETTE, createMap } from "/assets/shared/map.js";
import { instantOf } from "/assets/shared/time.js";

// Wait this long after the last key before searching: a search per key would list
// addresses for half-typed words the call-taker is already past.
const SEARCH_DELAY_MS = 250;
const SEARCH_LIMIT = 8;
const PLACE_ZOOM = 18;

export async function mount(root, ctx) {
  const lookup = ctx.params[0] === "lookup";
  const cleanups = [];
  const modes = h("nav", { class: "intake-modes", "aria-label": ctx.t("intake.modes") },
    h("a", { href: "#/intake", id: "intake-mode-new", "aria-current": lookup ? null : "page" }, ctx.t("intake.mode_new")),
    h("a", { href: "#/intake/lookup", id: "intake-mode-lookup", "aria-current": lookup ? "page" : null }, ctx.t("intake.mode_lookup")));
  const body = h("div", { class: "intake-body" });
  root.append(h("div", { class: "intake" }, modes, body));
  const types = await ctx.api.get("/service-types");
  if (lookup) lookupDesk(body, ctx, types, ctx.params[1]);
  else newReportDesk(body, ctx, types.filter((type) => type.active), cleanups);
  return () => cleanups.forEach((fn) => fn());
}

// -- a new report ------------------------------------------------------------------------

function newReportDesk(body, ctx, types, cleanups) {
  const { t, api } = ctx;
  const state = { type: null, place: null, nearby: null, searchTimer: null, search: null, nearbyRequest: null };

  const typeSelect = h("select", { id: "intake-type", name: "service_code" },
    h("option", { value: "" }, t("intake.type_choose")),
    [...types].sort((a, b) => a.name.localeCompare(b.name)).map((type) => h("option", { value: type.code }, type.name)));
  const address = h("input", {
    id: "intake-address", type: "search", autocomplete: "off", spellcheck: "false",
    "aria-describedby": "intake-address-hint", "aria-controls": "intake-address-results",
  });
  const searchStatus = h("p", { class: "field-hint", id: "intake-address-status", role: "status" });
  const results = h("ul", { class: "address-results", id: "intake-address-results", "aria-label": t("intake.address_results") });
  const placeBox = h("div", { class: "intake-place", id: "intake-place" });
  const nearbyBox = h("section", { class: "intake-nearby", id: "intake-nearby", "aria-labelledby": "intake-nearby-heading" });
  const attributesBox = h("div", { id: "intake-attributes" });
  const description = h("textarea", { id: "intake-description", maxlength: "4000", "aria-describedby": "intake-description-hint" });
  const contact = Object.fromEntries(["first_name", "last_name", "phone", "email"].map((name) => [name, h("input", {
    id: `intake-contact-${name}`, name, autocomplete: "off",
    type: name === "email" ? "email" : name === "phone" ? "tel" : "text", maxlength: name === "email" ? "320" : "255",
  })]));
  const errors = h("div", { class: "message", id: "intake-errors", "data-kind": "error" });
  const submit = h("button", { type: "submit", class: "primary", id: "intake-submit" }, t("intake.submit"));

  const form = h("form", { class: "intake-form", novalidate: true },
    h("h1", {}, t("intake.new_heading")),
    h("label", { for: "intake-type" }, t("intake.type")), typeSelect,
    h("label", { for: "intake-address" }, t("intake.address")), address,
    h("p", { class: "field-hint", id: "intake-address-hint" }, t("intake.address_hint")),
    searchStatus, results, placeBox, nearbyBox, attributesBox,
    h("label", { for: "intake-description" }, t("intake.description")), description,
    h("p", { class: "field-hint", id: "intake-description-hint" }, t("intake.description_hint")),
    h("fieldset", { class: "intake-contact", "aria-describedby": "intake-contact-hint" },
      h("legend", {}, t("intake.contact")),
      h("p", { class: "field-hint", id: "intake-contact-hint" }, t("intake.contact_hint")),
      Object.entries(contact).map(([name, input]) => h("div", {}, h("label", { for: input.id }, t(`intake.${name}`)), input))),
    errors, submit);
  const column = h("div", { class: "intake-column" }, form);
  const mapElement = h("div", { class: "intake-map", id: "intake-map" });
  replace(body, h("div", { class: "intake-new" }, column, mapElement));

  const map = createMap(mapElement, ctx.config, { label: t("intake.map") });
  const layers = { place: L.layerGroup().addTo(map), nearby: L.layerGroup().addTo(map) };
  // The grid gives the map its size only once it is in the page.
  requestAnimationFrame(() => map.invalidateSize());
  cleanups.push(() => {
    clearTimeout(state.searchTimer);
    state.search?.abort();
    state.nearbyRequest?.abort();
    map.remove();
  });

  renderPlace();
  renderNearby();

  // The problem: its questions, and what is already reported of it here.
  typeSelect.addEventListener("change", () => {
    state.type = types.find((type) => type.code === typeSelect.value) || null;
    replace(attributesBox, state.type ? attributeFields(state.type, t) : null);
    refreshNearby();
  });

  // The place, as the caller says it.
  address.addEventListener("input", () => {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(searchAddresses, SEARCH_DELAY_MS);
  });
  address.addEventListener("keydown", (event) => {
    const first = results.querySelector("button");
    if (event.key === "ArrowDown" && first) {
      event.preventDefault();
      first.focus();
    } else if (event.key === "Enter") {
      // Enter picks the best match rather than submitting a half-filled form.
      event.preventDefault();
      if (first) first.click();
    }
  });
  results.addEventListener("keydown", (event) => {
    const buttons = [...results.querySelectorAll("button")];
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = at + (event.key === "ArrowDown" ? 1 : -1);
      (next < 0 ? address : buttons[Math.min(next, buttons.length - 1)]).focus();
    } else if (event.key === "Escape") {
      address.focus();
    }
  });

  async function searchAddresses() {
    const q = address.value.trim();
    state.search?.abort();
    if (q.length < 2) {
      replace(results);
      replace(searchStatus);
      return;
    }
    const search = (state.search = new AbortController());
    replace(searchStatus, t("intake.address_searching"));
    try {
      const found = await api.get("/addresses", { query: { q, limit: SEARCH_LIMIT }, signal: search.signal });
      replace(searchStatus, found.length ? t("intake.address_count", { count: found.length }) : t("intake.address_none"));
      replace(results, found.map((hit) => h("li", {},
        h("button", { type: "button", class: "address-hit", onclick: () => choose(hit) }, hit.label))));
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(searchStatus, failure(err, t));
    }
  }

  function choose(hit) {
    setPlace({ lat: hit.lat, lon: hit.lon, label: hit.label, street: hit.precision === "street" });
    replace(results);
    replace(searchStatus);
    address.value = hit.label;
    address.focus();
  }

  // The spot, clicked on the map: the nearest address names it, the click places it.
  map.on("click", async (event) => {
    const { lat, lng: lon } = event.latlng;
    let hit = null;
    try {
      [hit] = await api.get("/addresses", { query: { near: `${lat.toFixed(6)},${lon.toFixed(6)}`, limit: 1 } });
    } catch (err) {
      ctx.toast(failure(err, t), "error");
    }
    setPlace({ lat, lon, label: hit ? hit.label : null, clicked: true, distance: hit ? Math.round(hit.distance_m) : null });
    if (hit) address.value = hit.label;
  });

  function setPlace(place) {
    state.place = place;
    renderPlace();
    if (place) map.setView([place.lat, place.lon], Math.max(map.getZoom(), PLACE_ZOOM));
    refreshNearby();
  }

  function renderPlace() {
    layers.place.clearLayers();
    const place = state.place;
    if (!place) {
      replace(placeBox, h("p", { class: "field-hint" }, h("strong", {}, `${t("intake.place")}: `), t("intake.place_none")));
      return;
    }
    L.circleMarker([place.lat, place.lon], { radius: 11, weight: 4, color: "#111418", fillColor: PALETTE[0], fillOpacity: 0.9 })
      .bindTooltip(h("span", {}, t("intake.map_place")))
      .addTo(layers.place);
    const detail = place.clicked
      ? (place.label ? t("intake.place_clicked", { distance: place.distance, label: place.label })
        : t("intake.place_clicked_bare", { lat: place.lat.toFixed(5), lon: place.lon.toFixed(5) }))
      : place.street ? t("intake.place_street") : null;
    replace(placeBox,
      h("p", { class: "intake-place-label" }, h("strong", {}, `${t("intake.place")}: `),
        place.label || `${place.lat.toFixed(5)}, ${place.lon.toFixed(5)}`),
      detail && h("p", { class: "field-hint", "data-kind": place.street ? "warn" : null }, detail),
      h("button", { type: "button", id: "intake-place-clear", onclick: () => { address.value = ""; setPlace(null); address.focus(); } },
        t("intake.place_clear")));
  }

  // Before a duplicate is made: what a report of this kind here would join.
  async function refreshNearby() {
    state.nearbyRequest?.abort();
    state.nearby = null;
    if (!state.type || !state.place) {
      renderNearby();
      return;
    }
    const request = (state.nearbyRequest = new AbortController());
    renderNearby(t("intake.nearby_loading"));
    try {
      state.nearby = await api.get("/requests/nearby", {
        query: { service_code: state.type.code, lat: state.place.lat, lon: state.place.lon }, signal: request.signal,
      });
      renderNearby();
    } catch (err) {
      if (err.name !== "AbortError") renderNearby(failure(err, t));
    }
  }

  function renderNearby(message) {
    layers.nearby.clearLayers();
    const heading = h("h2", { id: "intake-nearby-heading" }, t("intake.nearby_heading"));
    const nearby = state.nearby;
    if (!nearby) {
      replace(nearbyBox, heading, h("p", { class: "field-hint" }, message || t("intake.nearby_pick")));
      return;
    }
    const { radius_m: radius, candidates } = nearby;
    L.circle([state.place.lat, state.place.lon], { radius, weight: 2, dashArray: "6 6", color: "#111418", fill: false, interactive: false })
      .addTo(layers.nearby);
    for (const c of candidates) {
      L.circleMarker([c.location.lat, c.location.lon], { radius: 9, weight: 3, color: "#111418", fillColor: PALETTE[1], fillOpacity: 0.9 })
        .bindTooltip(h("span", {}, t("intake.nearby_number", { number: c.service_request_id })))
        .addTo(layers.nearby);
    }
    replace(nearbyBox, heading,
      h("p", { class: "message", "data-kind": candidates.length ? null : "ok", id: "intake-nearby-summary" },
        candidates.length ? t("intake.nearby_some", { count: candidates.length, radius })
          : t("intake.nearby_none", { radius })),
      candidates.length > 0 && h("ul", { class: "candidates" }, candidates.map((c) => h("li", { class: "candidate", dataset: { outcome: c.outcome } },
        h("p", { class: "candidate-head" },
          h("strong", {}, t("intake.nearby_number", { number: c.service_request_id })), " · ",
          c.status_words, " · ", t("intake.nearby_distance", { distance: Math.round(c.distance_m) }),
          h("span", { class: `badge ${c.outcome === "nearby" ? "" : "warn"}` }, t(`intake.outcome_${c.outcome}`))),
        c.description && h("p", { class: "candidate-description" }, c.description),
        h("p", { class: "field-hint" },
          [c.address, t("intake.nearby_reports", { count: c.report_count }), t("intake.nearby_reported", { when: ctx.fmt.dateTime(c.requested_at) })]
            .filter(Boolean).join(" · "))))));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(errors);
    if (!state.type) return refuse(t("intake.need_type"), typeSelect);
    if (!state.place) return refuse(t("intake.need_place"), address);
    const json = {
      service_code: state.type.code,
      lat: state.place.lat,
      lon: state.place.lon,
      description: description.value.trim(),
      attributes: attributeValues(attributesBox, state.type, ctx.config.time_zone),
      channel: "phone",
    };
    if (state.place.label) json.address_string = state.place.label;
    const given = Object.fromEntries(Object.entries(contact).map(([k, input]) => [k, input.value.trim()]).filter(([, v]) => v));
    if (Object.keys(given).length) json.contact = given;
    submit.disabled = true;
    replace(submit, t("intake.submitting"));
    try {
      const made = await api.post("/requests", { json });
      const outcome = state.nearby?.candidates.find((c) => c.service_request_id === made.duplicate_of)?.outcome;
      confirmation(column, ctx, made, outcome, state.place);
    } catch (err) {
      submit.disabled = false;
      replace(submit, t("intake.submit"));
      // The fields the API names are marked, and each of its messages shown once.
      const fields = err instanceof ApiError ? Object.keys(err.errors).filter((k) => k !== "error_code") : [];
      for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
      for (const key of fields) {
        const code = key.match(/^attribute\[(.+)\]$/)?.[1];
        const el = code ? attributesBox.querySelector(`[data-code="${CSS.escape(code)}"]`)
          : contact[key] || (key === "description" ? description : null);
        if (el) el.setAttribute("aria-invalid", "true");
      }
      const lines = err instanceof ApiError
        ? [...new Set(err.details.filter((d) => !d.startsWith("error_code")).map((d) => d.replace(/^[^:]+: /, "")))]
          .filter((line) => line !== err.message)
        : [];
      announce(errors, h("div", {}, h("p", {}, t("intake.refused", { message: failure(err, t) })),
        lines.length > 0 && h("ul", {}, lines.map((line) => h("li", {}, line)))), "error");
      errors.scrollIntoView({ block: "nearest" });
    }
  });

  function refuse(message, field) {
    announce(errors, message, "error");
    field.focus();
  }
}

/** The type's questions as form controls, in its order, required ones marked. */
function attributeFields(type, t) {
  const attributes = (type.attributes || []).filter((a) => a.variable !== false).sort((a, b) => a.order - b.order);
  if (!attributes.length) return null;
  return h("fieldset", { class: "intake-attributes" }, h("legend", {}, t("intake.attributes")), attributes.map((a) => {
    const id = `intake-attr-${a.code}`;
    const hintId = a.datatype_description ? `${id}-hint` : null;
    const label = [a.description, a.required ? ` ${t("intake.required")}` : ""];
    const common = { id, name: a.code, required: a.required, "aria-describedby": hintId, dataset: { code: a.code, datatype: a.datatype } };
    const hint = hintId && h("p", { class: "field-hint", id: hintId }, a.datatype_description);
    if (a.datatype === "multivaluelist") {
      return h("fieldset", { class: "intake-choices", id, dataset: { code: a.code, datatype: a.datatype }, "aria-describedby": hintId },
        h("legend", {}, label), hint,
        a.values.map((v) => h("label", { class: "choice" },
          h("input", { type: "checkbox", value: v.key, name: a.code }), ` ${v.name}`)));
    }
    let control;
    if (a.datatype === "singlevaluelist") {
      control = h("select", common, h("option", { value: "" }, t("intake.choose")), a.values.map((v) => h("option", { value: v.key }, v.name)));
    } else if (a.datatype === "text") {
      control = h("textarea", { ...common, maxlength: "4000" });
    } else if (a.datatype === "number") {
      control = h("input", { ...common, type: "number", step: "any", inputmode: "decimal" });
    } else if (a.datatype === "datetime") {
      control = h("input", { ...common, type: "datetime-local" });
    } else {
      control = h("input", { ...common, type: "text", maxlength: "255" });
    }
    return h("div", { class: "intake-attribute" }, h("label", { for: id }, label), hint, control);
  }));
}

/** What the form says, as POST /requests takes attributes: strings, a list for a multivaluelist. */
function attributeValues(box, type, timeZone) {
  const out = {};
  for (const el of box.querySelectorAll("[data-code]")) {
    const { code, datatype } = el.dataset;
    if (datatype === "multivaluelist") {
      const checked = [...el.querySelectorAll("input:checked")].map((input) => input.value);
      if (checked.length) out[code] = checked;
    } else if (el.value.trim()) {
      // A date and time the caller gives are the city's, whatever the desk computer's zone.
      out[code] = datatype === "datetime" ? instantOf(timeZone, ...el.value.split("T")).toISOString() : el.value.trim();
    }
  }
  return out;
}

// -- the read-back -----------------------------------------------------------------------

function confirmation(column, ctx, made, outcome, place) {
  const { t, fmt } = ctx;
  const heading = h("h1", { tabindex: "-1", id: "intake-recorded" }, t("intake.recorded"));
  const joined = made.duplicate_of
    ? t(outcome === "reopens" ? "intake.reopened" : "intake.joined", { number: made.duplicate_of })
    : t("intake.new_work");
  replace(column, h("section", { class: "intake-confirmation", "aria-labelledby": "intake-recorded" },
    heading,
    h("p", { class: "read-back-lead" }, t("intake.read_back")),
    confirmationNumber(made.service_request_id, t),
    h("p", { class: "message", "data-kind": made.duplicate_of ? null : "ok", id: "intake-joined" }, joined),
    h("dl", { class: "facts" },
      h("dt", {}, t("intake.status")), h("dd", { id: "intake-status" }, made.status_words),
      made.public_expected_at && [h("dt", {}, t("intake.expected_label")),
        h("dd", { id: "intake-expected" }, fmt.dateTime(made.public_expected_at))],
      h("dt", {}, t("intake.place")), h("dd", {}, made.address || (place && place.label) || ""),
      h("dt", {}, t("intake.status_page")), h("dd", {}, statusPageLink(made.service_request_id))),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "primary", id: "intake-next", onclick: () => nextCall(ctx) }, t("intake.next_call")),
      h("a", { class: "button", href: `#/intake/lookup/${encodeURIComponent(made.service_request_id)}` }, t("intake.look_up_this")))));
  // The heading takes the focus, so a screen reader announces the read-back at once.
  heading.focus();
}

function nextCall(ctx) {
  // The same hash would not remount the desk: go through the lookup and back.
  if (location.hash === "#/intake") ctx.navigate("#/intake/");
  else ctx.navigate("#/intake");
}

/** The number, large and in groups of three, for reading aloud; a screen reader hears it digit by digit. */
function confirmationNumber(number, t) {
  const groups = String(number).match(/.{1,3}/g) || [];
  return h("p", { class: "confirmation-number", id: "intake-number" },
    h("span", { class: "visually-hidden" }, `${t("intake.number_label")}: ${[...String(number)].join(" ")}`),
    h("span", { "aria-hidden": "true" }, groups.map((g) => h("span", { class: "digits" }, g))));
}

function statusPageLink(number) {
  const path = `/status/${encodeURIComponent(number)}`;
  return h("a", { href: path, target: "_blank", rel: "noopener" }, `${location.origin}${path}`);
}

// -- "what happened to my report?" ---------------------------------------------------------

function lookupDesk(body, ctx, types, initial) {
  const { t, api, fmt } = ctx;
  const input = h("input", {
    id: "intake-lookup-number", inputmode: "numeric", autocomplete: "off", maxlength: "32",
    "aria-describedby": "intake-lookup-hint",
  });
  const result = h("div", { class: "intake-lookup-result", id: "intake-lookup-result", "aria-live": "polite" });
  const form = h("form", { class: "intake-lookup-form", novalidate: true, onsubmit: (event) => { event.preventDefault(); look(); } },
    h("h1", {}, t("intake.lookup_heading")),
    h("label", { for: "intake-lookup-number" }, t("intake.lookup_number")),
    h("div", { class: "inline" }, input, h("button", { type: "submit", class: "primary" }, t("intake.lookup_submit"))),
    h("p", { class: "field-hint", id: "intake-lookup-hint" }, t("intake.lookup_hint")));
  replace(body, h("div", { class: "intake-lookup" }, form, result));
  if (initial) {
    input.value = initial;
    look();
  } else {
    input.focus();
  }

  async function look() {
    // Callers read numbers with spaces or dashes in them; the number has none.
    const number = input.value.replace(/[\s-]/g, "");
    if (!number) {
      replace(result, h("p", { class: "message", "data-kind": "error", role: "alert" }, t("intake.lookup_missing")));
      input.focus();
      return;
    }
    // The number goes into the hash so the answer can be bookmarked; replaceState does not remount the desk.
    history.replaceState(null, "", `#/intake/lookup/${encodeURIComponent(number)}`);
    let req;
    try {
      req = await api.get(`/requests/${encodeURIComponent(number)}`);
    } catch (err) {
      const text = err instanceof ApiError && err.status === 404 ? t("intake.lookup_not_found", { number }) : failure(err, t);
      replace(result, h("p", { class: "message", "data-kind": "error", role: "alert" }, text));
      return;
    }
    const type = types.find((ty) => ty.code === req.service_code);
    replace(result, h("article", { class: "intake-report", "aria-labelledby": "intake-report-heading" },
      h("h2", { id: "intake-report-heading" }, t("intake.lookup_report", { number: req.service_request_id })),
      h("p", { class: `status-words ${req.status === "closed" ? "closed" : ""}`, id: "intake-lookup-status" }, req.status_words),
      req.public_expected_at && h("p", { id: "intake-lookup-expected" }, t("intake.expected", { when: fmt.dateTime(req.public_expected_at) })),
      req.late_since && h("p", { class: "message", "data-kind": "error", id: "intake-lookup-late" }, t("intake.late", { when: fmt.dateTime(req.late_since) })),
      req.duplicate_of && h("p", { class: "message" }, t("intake.lookup_part_of", { number: req.duplicate_of })),
      h("dl", { class: "facts" },
        h("dt", {}, t("intake.lookup_problem")), h("dd", {}, type ? type.name : req.service_code),
        h("dt", {}, t("intake.lookup_place")), h("dd", {}, req.address || (req.location ? `${req.location.lat.toFixed(5)}, ${req.location.lon.toFixed(5)}` : t("intake.lookup_place_none"))),
        h("dt", {}, t("intake.lookup_reported")), h("dd", {}, fmt.dateTime(req.requested_at)),
        h("dt", {}, t("intake.status_page")), h("dd", {}, statusPageLink(req.service_request_id))),
      h("h3", {}, t("intake.lookup_timeline")),
      h("ol", { class: "public-timeline", id: "intake-lookup-timeline" }, req.public_timeline.map((e) => h("li", {},
        h("time", { datetime: e.at }, fmt.dateTime(e.at)),
        e.status_words && h("strong", {}, e.status_words),
        e.note && h("span", { class: "note" }, e.note))))));
  }
}

function failure(err, t) {
  if (err instanceof NetworkError) return t("intake.offline");
  return err.message;
}
