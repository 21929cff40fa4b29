// Proving who you are: the second step of signing in, enrolling an authenticator app or a security key
// (recovery codes shown once), and the prompt the server asks for before some decisions (step-up) and
// to unlock an idle console. Each dialog is built here; the server decides what is enough.

import { api, get, post, ApiError } from "./api.js";
import { h, fill } from "./dom.js";

// A decision reaches the server a while after its record was read: a session's last proof that grows too
// old this soon after it is sent is asked for now (the request takes its time, the console's idea of the
// server's clock may be off).
const SEND_MARGIN_MS = 10000;

const METHOD_TEXT = {
  totp: "Code from your authenticator app",
  recovery_code: "A recovery code",
  webauthn: "Your security key or passkey",
  password: "Your password",
};

/** What the server will want a proof of identity for when a decision reaches it, as the record read
 * says (`step_up`): the decision's own reasons (`side`: "approve" or "reject"; a PV1 verification is
 * "approve", a return "reject"), and the session's age when its last proof will be too old by then
 * (`now` by the server's clock; the decision held for `waitMs` first). */
export function stepUpNeeded(stepUp, side, { now, waitMs = 0 }) {
  if (!stepUp) return [];
  const needed = [...(stepUp[side] || [])];
  if (stepUp.stale_at && Date.parse(stepUp.stale_at) <= now + waitMs + SEND_MARGIN_MS) needed.push("session_age");
  return needed;
}

/** What asks for a proof, as the prompt says it ("you override a product-check flag; ..."): `words`,
 * the server's, by reason code (/api/v1/reasons, `step_up_reasons`). */
export function stepUpWhy(reasons, words) {
  return `${reasons.map((r) => words[r] || r).join("; ")}.`;
}

/** A modal dialog of this module's own: a title, a body built by the caller, closed by the caller. */
function modal(title, className = "") {
  const dialog = h("dialog", { class: ["identity-dialog", className], "aria-labelledby": "identity-title" });
  const body = h("div", { class: "identity-body" });
  dialog.append(h("h2", { id: "identity-title" }, title), body);
  document.body.append(dialog);
  dialog.addEventListener("close", () => dialog.remove());
  return { dialog, body };
}

function keyErrorText(err) {
  return err instanceof ApiError ? err.message : (err && err.name === "NotAllowedError"
    ? "The security key was not used (cancelled or timed out)." : `The security key failed: ${err?.message || err}`);
}

/** The browser's security key or passkey signs the server's challenge; the answer as JSON. */
export async function securityKeyAnswer() {
  const options = await post("/api/v1/session/webauthn-challenge");
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
  const credential = await navigator.credentials.get({ publicKey });
  return credential.toJSON();
}

/** A form for one proof: inputs for the methods offered; resolves with the body sent, once accepted. */
function proofForm({ methods, submit, cancelLabel = "Cancel", onCancel, intro }) {
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const showError = (text) => { error.textContent = text; error.hidden = false; };
  const form = h("form", { class: "identity-form", novalidate: true });
  if (intro) form.append(h("p", { class: "identity-intro" }, intro));
  const fields = {};
  for (const method of methods) {
    if (method === "webauthn") continue;
    const id = `proof-${method}`;
    const attrs = method === "password"
      ? { type: "password", autocomplete: "current-password" }
      : { type: "text", autocomplete: "one-time-code", inputmode: method === "totp" ? "numeric" : "text", spellcheck: "false" };
    fields[method] = h("input", { id, name: method, ...attrs });
    form.append(h("label", { for: id }, METHOD_TEXT[method]), fields[method]);
  }
  const actions = h("div", { class: "identity-actions" });
  if (Object.keys(fields).length) actions.append(h("button", { type: "submit", class: "btn primary", id: "proof-submit" }, "Confirm"));
  if (methods.includes("webauthn")) {
    actions.append(h("button", {
      type: "button", class: "btn", id: "proof-key",
      onclick: async () => {
        error.hidden = true;
        try {
          await submit({ webauthn: await securityKeyAnswer() });
        } catch (err) {
          showError(keyErrorText(err));
        }
      },
    }, "Use security key"));
  }
  if (onCancel) actions.append(h("button", { type: "button", class: "btn ghost", onclick: onCancel }, cancelLabel));
  form.append(error, actions);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    // The first field filled in is the proof given.
    const [method, input] = Object.entries(fields).find(([, el]) => el.value.trim()) || [];
    if (!method) {
      showError("Fill in one of the fields.");
      return;
    }
    try {
      await submit({ [method]: method === "password" ? input.value : input.value.trim() });
    } catch (err) {
      showError(err instanceof ApiError ? err.message : "The server could not be reached.");
      input.select();
    }
  });
  queueMicrotask(() => Object.values(fields)[0]?.focus());
  return form;
}

export class Identity {
  /** The second step of signing in; resolves with the session once the second factor was accepted,
   * or null when the person chose to sign in again. */
  signIn(session) {
    return new Promise((resolve) => {
      const { dialog, body } = modal("Second factor", "identity-sign-in");
      body.append(proofForm({
        methods: session.second_factors,
        intro: `Signed in as ${session.user.display_name}. Now prove it with your second factor.`,
        submit: async (proof) => {
          await post("/api/v1/session/second-factor", proof);
          dialog.close();
          resolve(await get("/api/v1/session"));
        },
        cancelLabel: "Sign in again",
        onCancel: async () => {
          await api("DELETE", "/api/v1/session").catch(() => {});
          dialog.close();
          resolve(null);
        },
      }));
      dialog.showModal();
    });
  }

  /** Asks for a proof the server wants: before a decision (detail: reasons, methods) or to unlock.
   * Resolves true once accepted and, for a step-up, once the server says it stepped up. */
  prove({ title, intro, methods, stepUp = false, cancellable = true, cancelLabel = "Cancel" }) {
    return new Promise((resolve) => {
      const { dialog, body } = modal(title, stepUp ? "identity-step-up" : "identity-unlock");
      body.append(proofForm({
        methods,
        intro,
        submit: async (proof) => {
          const done = await post("/api/v1/session/proof", proof);
          if (stepUp && !done.stepped_up) {
            throw new ApiError(403, "second_factor_needed", "This needs your second factor, not the password.");
          }
          resolve(true);
          dialog.close();
        },
        onCancel: () => { resolve(false); dialog.close(); },
        cancelLabel,
      }));
      dialog.addEventListener("cancel", (e) => { if (!cancellable) e.preventDefault(); });
      // Closed by Esc: cancelled, as by the button (once proved, the answer was given already).
      dialog.addEventListener("close", () => resolve(false));
      dialog.showModal();
    });
  }

  /** The prompt before a decision: `what` names it ("Approve Rx 7100457 for J. W. at ND-1"), so that
   * the pharmacist knows which fill or prescription it is for whatever is on screen; `why` says what asks for a proof
   * and `methods` which proofs do. True once the person proved it. */
  confirmDecision({ what, why, methods }) {
    return this.prove({
      title: "Confirm it is you",
      intro: what ? [h("strong", { class: "identity-what" }, what), ` — confirm it is you: ${why}`] : `Before this decision is recorded: ${why}`,
      methods: methods || ["password"],
      stepUp: true,
    });
  }

  /** The server's step_up_required answer, as a prompt: true once the person proved it. */
  stepUp(err) {
    return this.confirmDecision({ why: err.message.replace(/^Confirm it is you: /, ""), methods: err.detail?.methods });
  }

  /** Enrolment: an authenticator app (QR code) or a security key; recovery codes shown once at the
   * first. Resolves true when a factor was enrolled. With `required`, it cannot be skipped. */
  enrol({ required = false } = {}) {
    return new Promise((resolve) => {
      const { dialog, body } = modal("Add a second factor", "identity-enrol");
      const error = h("p", { class: "form-error", role: "alert", hidden: true });
      const fail = (err) => { error.textContent = err instanceof ApiError ? err.message : keyErrorText(err); error.hidden = false; };
      const done = (answer) => {
        if (!answer.recovery_codes.length) {
          dialog.close();
          resolve(true);
          return;
        }
        fill(body,
          h("p", {}, "Your recovery codes. Each signs you in once if you lose your authenticator. Keep them somewhere safe: they are not shown again."),
          h("ol", { class: "recovery-codes", id: "recovery-codes" }, answer.recovery_codes.map((c) => h("li", {}, h("code", {}, c)))),
          h("div", { class: "identity-actions" },
            h("button", { type: "button", class: "btn primary", id: "recovery-saved", onclick: () => { dialog.close(); resolve(true); } }, "I have saved them")));
      };
      const app = async () => {
        error.hidden = true;
        try {
          const begun = await post("/api/v1/second-factors/totp/begin");
          const code = h("input", { id: "enrol-code", type: "text", inputmode: "numeric", autocomplete: "one-time-code" });
          const form = h("form", { class: "identity-form", novalidate: true },
            h("p", {}, "Scan this with your authenticator app, then enter the code it shows."),
            h("img", { class: "qr", alt: "QR code for the authenticator app", src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(begun.qr_svg)}` }),
            h("p", { class: "identity-secret" }, "Or type this key: ", h("code", { id: "enrol-secret" }, begun.secret)),
            h("label", { for: "enrol-code" }, "Code from the app"), code,
            error,
            h("div", { class: "identity-actions" }, h("button", { type: "submit", class: "btn primary", id: "enrol-confirm" }, "Confirm")));
          form.addEventListener("submit", async (e) => {
            e.preventDefault();
            try {
              done(await post("/api/v1/second-factors/totp", { code: code.value.trim(), label: "Authenticator app" }));
            } catch (err) {
              fail(err);
            }
          });
          fill(body, form);
          code.focus();
        } catch (err) {
          fail(err);
        }
      };
      const key = async () => {
        error.hidden = true;
        try {
          const options = await post("/api/v1/second-factors/webauthn/begin");
          const created = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) });
          done(await post("/api/v1/second-factors/webauthn", { credential: created.toJSON(), label: "Security key" }));
        } catch (err) {
          fail(err);
        }
      };
      body.append(
        h("p", {}, required
          ? "Your organisation requires a second factor: add one to continue."
          : "A second factor protects your sign-in and confirms your identity at sensitive decisions."),
        h("div", { class: "identity-actions" },
          h("button", { type: "button", class: "btn primary", id: "enrol-app", onclick: app }, "Authenticator app"),
          h("button", { type: "button", class: "btn", id: "enrol-key", onclick: key }, "Security key or passkey"),
          h("button", { type: "button", class: "btn ghost", id: "enrol-later", onclick: () => { dialog.close(); resolve(false); } },
            required ? "Sign out" : "Not now")),
        error);
      dialog.addEventListener("cancel", (e) => { if (required) e.preventDefault(); else resolve(false); });
      dialog.showModal();
    });
  }

  /** The person's own factors: listed, added, removed (removing asks for a proof). */
  async manage() {
    const { dialog, body } = modal("Sign-in security", "identity-manage");
    const render = async () => {
      const listed = await get("/api/v1/second-factors");
      fill(body,
        listed.factors.length
          ? h("ul", { class: "factor-list", id: "factor-list" }, listed.factors.map((f) => h("li", {},
            h("span", {}, `${f.label} (${f.kind === "totp" ? "authenticator app" : "security key"})`),
            h("button", { type: "button", class: "btn small ghost", onclick: async () => {
              try {
                await api("DELETE", `/api/v1/second-factors/${f.id}`);
              } catch (err) {
                if (!(err instanceof ApiError) || err.code !== "step_up_required" || !(await this.stepUp(err))) return;
                await api("DELETE", `/api/v1/second-factors/${f.id}`);
              }
              render();
            } }, "Remove"))))
          : h("p", {}, "No second factor yet."),
        // Recovery codes come with a first factor: none to count before it.
        listed.factors.length ? h("p", { class: "identity-intro" }, `Recovery codes left: ${listed.recovery_codes_left}`) : null,
        h("div", { class: "identity-actions" },
          h("button", { type: "button", class: "btn primary", id: "factor-add", onclick: async () => { dialog.close(); await this.enrol(); } }, "Add a second factor"),
          h("button", { type: "button", class: "btn ghost", onclick: () => dialog.close() }, "Close")));
    };
    await render();
    dialog.showModal();
  }
}
