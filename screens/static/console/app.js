// The console: one page, a desk per job. Each desk is a module in desks/ that exports
// `mount(root, ctx)` (and may return a function that unmounts it). The desk shown is the
// URL's hash (#/review/42 → desk "review", params ["42"]), so a desk can be bookmarked and
// the browser's back button works. The token is kept in sessionStorage: a closed tab signs
// out, and the token never appears in a URL.
import { Api, loadConfig } from "/assets/shared/api.js";
import { announce, h, replace } from "/assets/shared/dom.js";
import { translator } from "/assets/shared/i18n.js";
import { signIn } from "/assets/shared/signin.js";
import { formatters } from "/assets/shared/time.js";
import strings from "./strings.js";

const STAFF = ["dispatcher", "supervisor", "admin"];
// One line per desk: id (the hash), the roles that see it, its module.
// Each desk's own line, with a blank line between, so desks land without touching each other.
const DESKS = [
  { id: "dispatch", roles: ["dispatcher", "supervisor", "admin"], module: "./desks/dispatch.js" },

  { id: "rosters", roles: ["dispatcher", "supervisor", "admin"], module: "./desks/rosters.js" },

  { id: "review", roles: ["supervisor", "admin"], module: "./desks/review.js" },

  { id: "intake", roles: ["call_taker", "dispatcher", "supervisor", "admin"], module: "./desks/intake.js" },
];

const TOKEN_KEY = "streetloop.console.token";
const t = translator(strings);
const root = document.getElementById("desk");
const nav = document.getElementById("desks");
const account = document.getElementById("account");
const toastRegion = document.getElementById("toast");

const api = new Api({
  getToken: () => sessionStorage.getItem(TOKEN_KEY),
  onUnauthorized: () => {
    sessionStorage.removeItem(TOKEN_KEY);
    start(t("app.expired"));
  },
});

let unmount = null;
let showing = 0; // which call of show() may mount its desk (the latest)
let toastTimer = null;

function toast(message, kind = "info") {
  announce(toastRegion, message, kind);
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => replace(toastRegion), kind === "error" ? 12000 : 5000);
}

function parseHash() {
  const [id, ...params] = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  return { id, params };
}

async function show(ctx) {
  const desks = DESKS.filter((d) => d.roles.includes(ctx.user.role));
  replace(nav, ...desks.map((d) => h("a", { href: `#/${d.id}`, id: `nav-${d.id}` }, t(`${d.id}.title`))));
  if (!desks.length) {
    replace(root, h("p", { class: "message" }, t("app.no_desk")));
    return;
  }
  const { id, params } = parseHash();
  const desk = desks.find((d) => d.id === id) || desks[0];
  if (desk.id !== id) {
    history.replaceState(null, "", `#/${desk.id}`);
  }
  for (const link of nav.querySelectorAll("a")) {
    if (link.id === `nav-${desk.id}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  takeDown();
  // Quick clicks may start a second desk before the first one's module has loaded: only
  // the latest is mounted (an earlier one mounted last would cover it, and poll unseen).
  const generation = ++showing;
  document.title = `${t(`${desk.id}.title`)} · ${t("app.title")}`;
  replace(root, h("p", { class: "message" }, t("app.loading")));
  const module = await import(desk.module);
  if (generation !== showing) return;
  root.replaceChildren();
  const down = (await module.mount(root, { ...ctx, params, desk: desk.id })) || null;
  if (generation !== showing) {
    if (down) down();
    return;
  }
  unmount = down;
}

function takeDown() {
  if (unmount) {
    try { unmount(); } catch (err) { console.error(err); }
    unmount = null;
  }
}

async function start(notice) {
  takeDown();
  showing += 1;
  replace(nav);
  replace(account);
  const config = await loadConfig();
  // Dates and numbers in the city's own locale (STREETLOOP_LOCALE), whatever the browser's.
  if (config.locale) document.documentElement.lang = config.locale;
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    const wait = signIn(root, { api, t });
    if (notice) toast(notice, "error");
    const answer = await wait;
    sessionStorage.setItem(TOKEN_KEY, answer.access_token);
  }
  let user;
  try {
    user = await api.get("/auth/me");
  } catch (err) {
    if (err.status === 401) return; // onUnauthorized has started over
    throw err;
  }
  const fmt = formatters(config.time_zone, config.locale);
  const ctx = {
    api, t, config, fmt, user, toast,
    navigate: (hash) => { location.hash = hash; },
    isStaff: STAFF.includes(user.role),
  };
  replace(account,
    h("span", { class: "who" }, t("app.signed_in_as", { name: user.name || user.email, role: t(`role.${user.role}`) })),
    h("button", { type: "button", id: "sign-out", onclick: () => signOut() }, t("app.sign_out")));
  window.onhashchange = () => show(ctx).catch(failed);
  await show(ctx);
}

async function signOut() {
  // The desk goes first: what it still has in flight, or would poll next, must not go out
  // with the token being revoked (each would be a 401, and a second start()).
  takeDown();
  showing += 1;
  window.onhashchange = null;
  try {
    await api.post("/auth/logout");
  } catch (err) {
    console.warn("sign-out", err);
  }
  sessionStorage.removeItem(TOKEN_KEY);
  start();
}

function failed(err) {
  console.error(err);
  replace(root, h("p", { class: "message", "data-kind": "error", role: "alert" }, t("app.failed", { message: err.message })));
}

document.getElementById("skip-link").textContent = t("app.skip");
document.title = t("app.title");
start().catch(failed);
