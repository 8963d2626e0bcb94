/*
 * annotate.js — the tags, notes and rating form in the call detail drawer.
 *
 * Owns: one form per drawer, kept across the drawer's redraws (a stream event
 * refetches the call; what the user is typing must survive it): tag chips
 * each with a remove button, a text input where Enter adds a tag, a notes
 * textarea, a rating radio group (1–5, or none), and Save, which PATCHes the
 * call. The result is said in a polite status line; a refusal (its field and
 * why) in an alert. Values from the server replace the form's only while the
 * user has nothing unsaved. Limits mirror the server's (model/annotations.py).
 */

import { h, fill, setText } from "./dom.js";
import { callUrl, patchJSON } from "./api.js";

const MAX_TAGS = 10;
const MAX_TAG = 32;
const MAX_NOTES = 2000;
let serial = 0;

export class AnnotationForm {
  constructor() {
    const n = ++serial;
    this.callId = null;
    this.tags = [];
    this.dirty = false;
    this.saving = false;
    this.chips = h("ul", { class: "pd-tag-list", "aria-label": "Tags" });
    this.tagInput = h("input", { class: "pd-input", id: `pd-tag-input-${n}`, type: "text", maxlength: String(MAX_TAG), autocomplete: "off", spellcheck: "false", "aria-describedby": `pd-tag-help-${n}` });
    this.notes = h("textarea", { class: "pd-input pd-notes", id: `pd-notes-${n}`, rows: "3", maxlength: String(MAX_NOTES) });
    this.ratings = [null, 1, 2, 3, 4, 5].map((v) => h("input", { type: "radio", name: `pd-rating-${n}`, value: v === null ? "" : String(v) }));
    this.save = h("button", { class: "pd-btn pd-btn-primary", type: "submit" }, "Save");
    this.status = h("p", { class: "pd-muted pd-annotate-status", role: "status", "aria-live": "polite" });
    this.error = h("p", { class: "pd-alert", role: "alert", hidden: true });
    this.el = h("form", { class: "pd-detail-section pd-annotate", novalidate: true, "aria-labelledby": `pd-annotate-title-${n}` },
      h("h3", { id: `pd-annotate-title-${n}` }, "Tags and notes"),
      h("div", { class: "pd-field" },
        h("label", { class: "pd-field-label", for: this.tagInput.id }, "Add a tag"),
        this.chips,
        this.tagInput,
        h("span", { class: "pd-muted pd-help", id: `pd-tag-help-${n}` }, `Enter adds it; up to ${MAX_TAGS} tags of ${MAX_TAG} characters, no commas.`)),
      h("div", { class: "pd-field" },
        h("label", { class: "pd-field-label", for: this.notes.id }, "Notes"),
        this.notes),
      h("fieldset", { class: "pd-rating" },
        h("legend", { class: "pd-field-label" }, "Rating"),
        this.ratings.map((r) => h("label", { class: "pd-rating-option" }, r, r.value === "" ? "None" : r.value))),
      h("div", { class: "pd-annotate-actions" }, this.save, this.status),
      this.error);

    this.tagInput.addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter") return;
      ev.preventDefault(); // Enter adds a tag; it does not save the form
      this.addTag();
    });
    this.el.addEventListener("input", () => this.changed());
    this.el.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
  }

  /** Show a call's annotations; unsaved edits to the same call are kept. */
  show(call) {
    const id = String(call.call_id);
    if (id === this.callId && this.dirty) return;
    if (id !== this.callId) {
      this.callId = id;
      this.dirty = false;
      this.tagInput.value = "";
      setText(this.status, "");
      this.showError("");
    }
    this.tags = Array.isArray(call.tags) ? call.tags.map(String) : [];
    this.notes.value = typeof call.notes === "string" ? call.notes : "";
    const rating = typeof call.rating === "number" ? String(call.rating) : "";
    for (const r of this.ratings) r.checked = r.value === rating;
    this.drawChips();
  }

  changed() {
    this.dirty = true;
    setText(this.status, "");
  }

  addTag() {
    const tag = this.tagInput.value.trim().normalize("NFC");
    if (!tag) return;
    if (tag.length > MAX_TAG || tag.includes(",")) {
      this.showError(`A tag has at most ${MAX_TAG} characters and no comma.`);
      return;
    }
    if (!this.tags.includes(tag)) {
      if (this.tags.length >= MAX_TAGS) {
        this.showError(`A call has at most ${MAX_TAGS} tags.`);
        return;
      }
      this.tags.push(tag);
    }
    this.showError("");
    this.tagInput.value = "";
    this.changed();
    this.drawChips();
    setText(this.status, `Tag ${tag} added; Save to keep it.`);
  }

  removeTag(tag) {
    this.tags = this.tags.filter((t) => t !== tag);
    this.changed();
    this.drawChips();
    setText(this.status, `Tag ${tag} removed; Save to keep it.`);
    this.tagInput.focus(); // the chip and its button are gone: focus goes where tags are typed
  }

  drawChips() {
    fill(this.chips, this.tags.map((t) => h("li", { class: "pd-chip pd-chip-tag" },
      h("span", null, t),
      (() => {
        const b = h("button", { class: "pd-chip-remove", type: "button", "aria-label": `Remove tag ${t}` }, h("span", { "aria-hidden": "true" }, "✕"));
        b.addEventListener("click", () => this.removeTag(t));
        return b;
      })())));
    this.chips.hidden = !this.tags.length;
  }

  showError(text) {
    setText(this.error, text);
    this.error.hidden = !text;
  }

  async submit() {
    if (this.saving || this.callId === null) return;
    if (this.tagInput.value.trim()) this.addTag(); // a tag typed but not yet added counts
    const checked = this.ratings.find((r) => r.checked);
    const body = { tags: this.tags, notes: this.notes.value, rating: checked && checked.value ? Number(checked.value) : null };
    const id = this.callId;
    this.saving = true;
    this.save.disabled = true;
    this.showError("");
    setText(this.status, "Saving…");
    try {
      const answer = await patchJSON(callUrl(id), body);
      if (id !== this.callId) return;
      this.dirty = false;
      if (answer && answer.data) this.show(answer.data);
      setText(this.status, "Saved.");
    } catch (err) {
      if (id !== this.callId) return;
      setText(this.status, "");
      this.showError(`Not saved: ${(err && err.message) || "the server did not answer"}.`);
    } finally {
      this.saving = false;
      this.save.disabled = false;
    }
  }
}
