// The contact sheet: the newest page of shots fills itself from the live events; older shots are read a
// page at a time (`before=`), so the page holds one page of thumbnails however long the session is.

import { useState } from 'preact/hooks';
import { baseName, bytes, timeOfDay } from './format.js';
import { html } from './html.js';

function Shot({ shot }) {
  const [broken, setBroken] = useState(false);
  const name = baseName(shot.path);
  const failed = shot.state === 'failed';
  const status = failed ? 'failed' : shot.uploaded ? 'verified, uploaded' : 'verified';
  return html`<li class=${`shot${failed ? ' failed' : ''}`} data-file-id=${shot.fileId}>
    <figure>
      ${
        shot.preview && !broken
          ? html`<img src=${shot.preview} alt=${name} loading="lazy" decoding="async" width="160" height="120" onError=${() => setBroken(true)} />`
          : html`<div class="no-preview" role="img" aria-label=${`${name} (no preview)`}>${name.split('.').pop()?.toUpperCase()}</div>`
      }
      <figcaption>
        <span class="name" title=${shot.path}>${name}</span>
        <span class=${`badge ${failed ? 'bad' : 'good'}`} title=${failed ? (shot.error ?? 'not copied') : shot.copies.join('\n')}>${failed ? 'FAILED' : shot.uploaded ? '✓ ☁' : '✓'}<span class="sr-only">${status}</span></span>
      </figcaption>
      ${shot.size !== undefined || shot.at ? html`<small class="muted">${[shot.size !== undefined ? bytes(shot.size) : '', timeOfDay(shot.at)].filter(Boolean).join(' · ')}</small>` : null}
    </figure>
  </li>`;
}

export function ContactSheet({ sheet, loadPage }) {
  const { items, next, cursor, back, newer, loading } = sheet;
  const newest = cursor === undefined;
  return html`<section class="sheet" aria-labelledby="sheet-h" aria-busy=${loading}>
    <header class="section-head">
      <h2 id="sheet-h">Shots ${newest ? '' : html`<small class="muted">(older page ${back.length + 1})</small>`}</h2>
      ${
        !newest &&
        html`<button type="button" class="btn" onClick=${() => loadPage(undefined, [])}>
          ${newer > 0 ? `${newer} new — show newest` : 'Show newest'}
        </button>`
      }
    </header>
    ${items.length === 0 && !loading ? html`<p class="muted">No shots yet in this session.</p>` : null}
    <ul class="shots">
      ${items.map((s) => html`<${Shot} key=${s.fileId} shot=${s} />`)}
    </ul>
    <nav class="pager" aria-label="Contact sheet pages">
      ${!newest && html`<button type="button" class="btn" onClick=${() => loadPage(back[back.length - 1], back.slice(0, -1))} disabled=${loading}>Newer</button>`}
      ${next !== undefined && next !== null && html`<button type="button" class="btn" onClick=${() => loadPage(next, [...back, cursor])} disabled=${loading}>Older shots</button>`}
    </nav>
  </section>`;
}
