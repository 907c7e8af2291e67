// Strings live in one file per app (crew/strings.js, console/strings.js), so a city can
// translate an app by translating one file. A value is a string with {named} slots, or an
// object of plural forms ({one, other, …}) chosen with Intl.PluralRules on `count`.

export function translator(strings, locale = document.documentElement.lang || "en") {
  const plural = new Intl.PluralRules(locale);
  return function t(key, params = {}) {
    let value = strings[key];
    if (value === undefined) {
      // Visible, not silent: an untranslated key shows as itself and is logged once.
      console.warn(`missing string: ${key}`);
      return key;
    }
    if (typeof value === "object") value = value[plural.select(params.count ?? 0)] ?? value.other;
    return value.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  };
}
