// Buttons that ask the daemon to do something: disabled while the request runs, and the daemon's
// answer (or its refusal, with its message) shown in the notice line.

import { useState } from 'preact/hooks';
import { post } from './api.js';
import { html } from './html.js';

/** `onDone(answer)`: for an answer that changes what the page shows and that no event reports. */
export function ActionButton({ path, body, label, title, done, dispatch, onDone, disabled, kind = '' }) {
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    try {
      const answer = await post(path, body);
      onDone?.(answer);
      dispatch({ type: 'notice', notice: { ok: true, text: done } });
    } catch (err) {
      if (err.status !== 401) dispatch({ type: 'notice', notice: { ok: false, text: `${label}: ${err.message}${err.code ? ` (${err.code})` : ''}` } });
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${`btn ${kind}`} onClick=${run} disabled=${busy || disabled} aria-busy=${busy} title=${title}>${label}</button>`;
}
