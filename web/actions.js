// Buttons that ask the daemon to do something: disabled while the request runs, and the daemon's
// answer (or its refusal, with its message) shown in the notice line.

import { useState } from 'preact/hooks';
import { post } from './api.js';
import { html } from './html.js';

export function ActionButton({ path, body, label, title, done, dispatch, disabled, kind = '' }) {
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    try {
      await post(path, body);
      dispatch({ type: 'notice', notice: { ok: true, text: done } });
    } catch (err) {
      if (err.status !== 401) dispatch({ type: 'notice', notice: { ok: false, text: `${label}: ${err.message}${err.code ? ` (${err.code})` : ''}` } });
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${`btn ${kind}`} onClick=${run} disabled=${busy || disabled} aria-busy=${busy} title=${title}>${label}</button>`;
}
