// Every word the console shows, in one place: translate this file to translate the console.
// Desks add their own keys under their prefix (dispatch., rosters., review., intake.).
export default {
  "app.title": "StreetLoop console",
  "app.skip": "Skip to the desk",
  "app.sign_out": "Sign out",
  "app.signed_in_as": "{name} ({role})",
  "app.no_desk": "Your role has no desk in the console.",
  "app.loading": "Loading…",
  "app.failed": "Something went wrong: {message}",
  "app.expired": "You were signed out (the session ended). Sign in again.",
  "role.dispatcher": "dispatcher",
  "role.supervisor": "supervisor",
  "role.admin": "admin",
  "role.call_taker": "call-taker",
  "role.crew": "crew",

  "sign_in.title": "Sign in to the console",
  "sign_in.email": "E-mail",
  "sign_in.password": "Password",
  "sign_in.submit": "Sign in",
  "sign_in.missing": "Enter your e-mail and password.",
  "sign_in.wrong": "Wrong e-mail or password.",
  "sign_in.too_many": "Too many failed sign-ins. Wait a few minutes, then try again.",
  "sign_in.offline": "The server cannot be reached. Check the network and try again.",

  // -- maps (shared/map.js, on every desk that has one) --
  "map.no_basemap": "No street map: the basemap has not been built.",

  // -- dispatch desk (map, plans, timeline) --
  "dispatch.title": "Dispatch",

  // -- rosters desk (shifts, breaks, weekly patterns) --
  "rosters.title": "Rosters",

  // -- review desk (supervisors verify completions) --
  "review.title": "Review",

  // -- intake desk (call-takers record residents' calls) --
  "intake.title": "Intake",
};
