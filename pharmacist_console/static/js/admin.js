// The administrator's page: people (deactivate, reactivate, new password, reset second factors),
// sites (suspend, require a second factor) and device and integration tokens (revoke by id). Every
// change is made by the server, which audits it and closes the live connections it takes rights from.

import { api, getAll, post, ApiError } from "./api.js";
import { h, fill, toast } from "./dom.js";

function section(title, ...children) {
  return h("section", { class: "admin-section" }, h("h2", {}, title), ...children);
}

function table(id, headings, rows) {
  return h("table", { class: "admin-table", id },
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows));
}

export class AdminPage {
  constructor({ root }) {
    this.root = root;
  }

  /** Runs one change and shows the page again; a refusal is told as the server words it. */
  async change(what, done) {
    try {
      await what();
      toast(done, "ok");
    } catch (err) {
      toast(err instanceof ApiError ? err.message : String(err), "error");
    }
    await this.load();
  }

  async load() {
    const [users, sites, tokens] = await Promise.all([
      getAll("/api/v1/users", "users"), getAll("/api/v1/sites", "sites"), getAll("/api/v1/tokens", "tokens"),
    ]);
    const siteCode = new Map(sites.sites.map((s) => [s.id, s.code]));
    fill(this.root,
      h("div", { class: "admin-head" }, h("h1", { class: "view-title" }, "Accounts")),
      section("People", table("admin-users", ["User", "Role", "Site", "Status", ""],
        users.users.filter((u) => u.role !== "integration").map((u) => h("tr", { dataset: { username: u.username } },
          h("td", {}, h("strong", {}, u.username), h("div", { class: "admin-sub" }, u.display_name)),
          h("td", {}, u.role),
          h("td", {}, siteCode.get(u.site_id) || "–"),
          h("td", {}, u.active ? "active" : h("span", { class: "pill pill-bad" }, "deactivated")),
          h("td", { class: "admin-actions" },
            h("button", { type: "button", class: "btn small", dataset: { action: u.active ? "deactivate" : "reactivate" },
              onclick: () => this.change(() => post(`/api/v1/users/${encodeURIComponent(u.username)}/active`, { active: !u.active }),
                `${u.username} ${u.active ? "deactivated: signed out everywhere" : "reactivated"}`) },
            u.active ? "Deactivate" : "Reactivate"),
            u.role === "technician" ? null : h("button", { type: "button", class: "btn small ghost", dataset: { action: "password" },
              onclick: () => this.newPassword(u.username) }, "New password"),
            u.role === "technician" ? null : h("button", { type: "button", class: "btn small ghost", dataset: { action: "reset-factors" },
              onclick: () => this.change(() => api("DELETE", `/api/v1/users/${encodeURIComponent(u.username)}/second-factors`),
                `${u.username}'s second factors removed`) }, "Reset second factor")))))),
      section("Sites", table("admin-sites", ["Site", "State", "Status", "Second factor", ""],
        sites.sites.map((s) => h("tr", { dataset: { site: s.code } },
          h("td", {}, h("strong", {}, s.code), h("div", { class: "admin-sub" }, s.name)),
          h("td", {}, s.state),
          h("td", {}, s.status === "active" ? "active" : h("span", { class: "pill pill-bad" }, s.status)),
          h("td", {}, s.require_second_factor ? "required" : "–"),
          h("td", { class: "admin-actions" },
            h("button", { type: "button", class: "btn small", dataset: { action: s.status === "active" ? "suspend" : "activate" },
              onclick: () => this.change(() => post(`/api/v1/sites/${s.id}/status`, { status: s.status === "active" ? "suspended" : "active" }),
                `${s.code} ${s.status === "active" ? "suspended" : "active again"}`) },
            s.status === "active" ? "Suspend" : "Make active"),
            h("button", { type: "button", class: "btn small ghost", dataset: { action: "second-factor" },
              onclick: () => this.change(() => post(`/api/v1/sites/${s.id}/status`, { require_second_factor: !s.require_second_factor }),
                `${s.code}: second factor ${s.require_second_factor ? "no longer required" : "required"}`) },
            s.require_second_factor ? "Stop requiring second factor" : "Require second factor")))))),
      section("Device and integration tokens", h("p", { class: "admin-sub" }, "A token is shown once, when issued; here only its id."),
        table("admin-tokens", ["Id", "Kind", "For", "Label", "Issued", "Status", ""],
          tokens.tokens.map((t) => h("tr", { dataset: { token: t.id } },
            h("td", {}, String(t.id)), h("td", {}, t.kind),
            h("td", {}, `${t.username}${t.site_code ? ` (${t.site_code})` : ""}`),
            h("td", {}, t.label), h("td", {}, new Date(t.created_at).toLocaleDateString()),
            h("td", {}, t.revoked_at ? h("span", { class: "pill pill-bad" }, "revoked") : "active"),
            h("td", { class: "admin-actions" }, t.revoked_at ? null : h("button", { type: "button", class: "btn small", dataset: { action: "revoke" },
              onclick: () => this.change(() => api("DELETE", `/api/v1/device-tokens/${t.id}`), `Token ${t.id} revoked`) }, "Revoke")))))));
  }

  newPassword(username) {
    const input = h("input", { id: "admin-new-password", type: "password", autocomplete: "new-password" });
    const dialog = h("dialog", { class: "identity-dialog", "aria-labelledby": "admin-password-title" });
    const form = h("form", { class: "identity-form", method: "dialog" },
      h("h2", { id: "admin-password-title" }, `New password for ${username}`),
      h("p", { class: "identity-intro" }, "Their console sessions end; tell them the new password in person."),
      h("label", { for: "admin-new-password" }, "New password"), input,
      h("div", { class: "identity-actions" },
        h("button", { type: "submit", class: "btn primary", id: "admin-password-save" }, "Set password"),
        h("button", { type: "button", class: "btn ghost", onclick: () => dialog.close() }, "Cancel")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      dialog.close();
      this.change(() => post(`/api/v1/users/${encodeURIComponent(username)}/password`, { password: input.value }),
        `Password of ${username} reset; their sessions ended`);
    });
    dialog.append(form);
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  }
}
