/*
 * deletion.js — deleting a call, after asking.
 *
 * Owns: the confirmation dialog (#pd-delete-dialog, an alertdialog): what it
 * says about the call, Cancel focused first (the safe choice), Esc and Cancel
 * closing it with nothing done and focus back on the button that opened it,
 * the DELETE request, and its errors, said in the dialog's own alert region
 * (the page behind a modal dialog is inert, so nothing there would be heard).
 * On success it closes and hands the deleted ids to opts.onDeleted; the app
 * removes the call everywhere (the stream's call_deleted does the same on
 * every other open page).
 */

import { setText } from "./dom.js";
import * as fmt from "./format.js";
import { callUrl, deleteJSON } from "./api.js";
import { trapFocus } from "./keys.js";
import { isEnded } from "./calls.js";

export class DeleteDialog {
  /**
   * @param {HTMLDialogElement} dialog
   * @param {object} opts  {onDeleted(ids, message)}
   */
  constructor(dialog, opts) {
    this.dialog = dialog;
    this.opts = opts;
    this.text = dialog.querySelector(".pd-confirm-text");
    this.error = dialog.querySelector(".pd-confirm-error");
    this.cancel = dialog.querySelector("#pd-delete-cancel");
    this.confirm = dialog.querySelector("#pd-delete-confirm");
    this.call = null;
    this.opener = null;
    this.busy = false;
    this.done = false;
    /** The id being deleted right now: its call_deleted frame may come before the answer. */
    this.pendingId = null;

    this.cancel.addEventListener("click", () => this.dialog.close());
    this.confirm.addEventListener("click", () => this.run());
    dialog.addEventListener("close", () => {
      const opener = this.opener;
      this.opener = null;
      if (!this.done && opener && opener.isConnected && !opener.disabled) opener.focus();
    });
    trapFocus(dialog);
  }

  /** Ask whether to delete `call`; `opener` gets focus back if the answer is no. */
  open(call, opener) {
    if (!call || call.call_id == null || this.dialog.open) return;
    this.call = call;
    this.opener = opener || null;
    this.done = false;
    setText(this.error, "");
    const who = `${call.caller || "an unknown caller"} to ${call.callee || "an unknown number"}`;
    const when = typeof call.started_at === "number" ? `, started ${fmt.dateTime(call.started_at)},` : "";
    const live = isEnded(call) ? "" : " It is still in progress: anything its runtime sends after this starts a new record.";
    setText(this.text, `The call from ${who}${when} will be removed from history, analytics and the history file. This cannot be undone.${live}`);
    this.setBusy(false);
    this.dialog.showModal();
    this.cancel.focus();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  /** While the request runs the button stays focusable (a disabled one would drop focus out of the dialog). */
  setBusy(busy) {
    this.busy = busy;
    this.pendingId = busy && this.call ? String(this.call.call_id) : null;
    this.confirm.setAttribute("aria-disabled", String(busy));
    setText(this.confirm, busy ? "Deleting…" : "Delete call");
  }

  async run() {
    if (this.busy || !this.call) return;
    const id = String(this.call.call_id);
    this.setBusy(true);
    setText(this.error, "");
    try {
      const body = await deleteJSON(callUrl(id));
      const ids = body && Array.isArray(body.call_ids) ? body.call_ids.map(String) : [id];
      this.finish(ids, "Call deleted.");
    } catch (err) {
      if (err && err.status === 404) {
        this.finish([id], "The call was already deleted.");
        return;
      }
      this.setBusy(false);
      const why = err && err.status ? err.message : "the server did not answer";
      // Cleared first: an alert whose text does not change is not read again.
      requestAnimationFrame(() => setText(this.error, `Could not delete the call: ${why}. Try again.`));
    }
  }

  finish(ids, message) {
    this.done = true;
    this.setBusy(false);
    this.close();
    this.opts.onDeleted(ids, message);
  }
}
