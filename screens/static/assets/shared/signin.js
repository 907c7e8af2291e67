// The sign-in form both apps show: e-mail and password to POST /api/v1/auth/token.
import { ApiError, NetworkError } from "./api.js";
import { announce, h } from "./dom.js";

/**
 * Render the form into `root`; resolves with the token answer ({access_token, expires_in})
 * once the server accepts the password. `t` must have: sign_in.title, sign_in.email,
 * sign_in.password, sign_in.submit, sign_in.wrong, sign_in.too_many, sign_in.offline.
 */
export function signIn(root, { api, t, title }) {
  return new Promise((resolve) => {
    const message = h("p", { class: "message", id: "sign-in-message" });
    const email = h("input", { id: "sign-in-email", type: "email", name: "email", autocomplete: "username", required: true, "aria-describedby": "sign-in-message" });
    const password = h("input", { id: "sign-in-password", type: "password", name: "password", autocomplete: "current-password", required: true });
    const submit = h("button", { type: "submit", class: "primary" }, t("sign_in.submit"));
    const form = h("form", { class: "sign-in", novalidate: true },
      h("h1", {}, title || t("sign_in.title")),
      h("label", { for: "sign-in-email" }, t("sign_in.email")), email,
      h("label", { for: "sign-in-password" }, t("sign_in.password")), password,
      submit, message);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!email.value.trim() || !password.value) {
        announce(message, t("sign_in.missing"), "error");
        return;
      }
      submit.disabled = true;
      try {
        const answer = await api.post("/auth/token", { json: { email: email.value.trim(), password: password.value }, token: false });
        resolve(answer);
      } catch (err) {
        if (err instanceof ApiError && err.status === 429) announce(message, t("sign_in.too_many"), "error");
        else if (err instanceof ApiError && err.status === 401) announce(message, t("sign_in.wrong"), "error");
        else if (err instanceof NetworkError) announce(message, t("sign_in.offline"), "error");
        else announce(message, err.message, "error");
        password.select();
      } finally {
        submit.disabled = false;
      }
    });
    root.replaceChildren(form);
    email.focus();
  });
}
