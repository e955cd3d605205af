// The upload queue (with pause and resume, and "send next" for one file) and the recent errors.

import { ActionButton } from './actions.js';
import { bytes, timeOfDay } from './format.js';
import { html } from './html.js';

export function Uploads({ station, uploads, dispatch }) {
  const onDone = (r) => dispatch({ type: 'uploads-paused', paused: r.paused, state: r.state });
  const summary = station?.uploads;
  if (!summary && !uploads) return null;
  const paused = uploads?.paused ?? summary?.paused ?? false;
  const state = paused ? 'paused' : (uploads?.state ?? summary?.state ?? 'idle');
  const depth = uploads?.depth ?? summary?.depth ?? 0;
  const items = uploads?.items ?? [];
  return html`<section class="uploads" aria-labelledby="uploads-h">
    <header class="section-head">
      <h2 id="uploads-h">Uploads</h2>
      ${
        paused
          ? html`<${ActionButton} path="uploads/resume" label="Resume uploads" done="Uploads resumed" dispatch=${dispatch} onDone=${onDone} />`
          : html`<${ActionButton} path="uploads/pause" label="Pause uploads" done="Uploads paused" dispatch=${dispatch} onDone=${onDone} />`
      }
    </header>
    <p class="upload-summary" role="status">
      <strong class=${`upload-state ${paused || state === 'failed' || state === 'backing-off' ? 'warn' : ''}`}>${state}</strong>
      ${` · ${depth} ${depth === 1 ? 'file' : 'files'} waiting${summary?.bytes !== undefined ? ` · ${bytes(summary.bytes)}` : ''}${summary?.failed ? ` · ${summary.failed} failed` : ''}`}
      ${summary?.target ? html`<span class="muted"> → ${summary.target}</span>` : null}
    </p>
    ${
      items.length > 0 &&
      html`<ol class="queue">
        ${items.map(
          (u) => html`<li key=${u.fileId} class=${u.lastError ? 'has-error' : ''}>
            <span class="name" title=${u.key}>${u.key}</span>
            <span class="muted">${u.state}${u.attempts ? ` · try ${u.attempts}` : ''}</span>
            ${u.lastError ? html`<span class="bad">${typeof u.lastError === 'string' ? u.lastError : u.lastError.message}</span>` : null}
            ${
              u.state === 'queued' &&
              html`<${ActionButton} path=${`uploads/${u.fileId}/priority`} body=${{ priority: -1 }} label="Send next" done=${`${u.key} goes next`} kind="small" dispatch=${dispatch} />`
            }
          </li>`,
        )}
      </ol>`
    }
  </section>`;
}

export function Errors({ errors }) {
  return html`<section class="errors" aria-labelledby="errors-h">
    <h2 id="errors-h">Errors</h2>
    ${
      errors.length === 0
        ? html`<p class="muted">None.</p>`
        : html`<ol class="error-list">
          ${errors.map(
            (e) => html`<li key=${e.id}>
              <time datetime=${e.at}>${timeOfDay(e.at)}</time>
              <code>${e.code}</code>
              <span>${e.message}</span>
              ${e.path ? html`<span class="muted">${e.path}</span>` : null}
            </li>`,
          )}
        </ol>`
    }
  </section>`;
}
