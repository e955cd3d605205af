// The contact sheet: the newest page of shots fills itself from the live events; older shots are read a
// page at a time (`before=`), so the page holds one page of thumbnails however long the session is.
// Tiles load the small thumbnail; a click shows the full preview.

import { useEffect, useRef, useState } from 'preact/hooks';
import { baseName, bytes, timeOfDay } from './format.js';
import { html } from './html.js';

function Shot({ shot, onOpen }) {
  const [broken, setBroken] = useState(false);
  const name = baseName(shot.path);
  const failed = shot.state === 'failed';
  const status = failed ? 'failed' : shot.uploaded ? 'verified, uploaded' : 'verified';
  return html`<li class=${`shot${failed ? ' failed' : ''}`} data-file-id=${shot.fileId}>
    <figure>
      ${
        shot.preview && !broken
          ? html`<a class="shot-open" href=${shot.preview} title=${`${name}: full preview`} onClick=${(ev) => {
              // A modified click opens the preview in a tab of its own, as a link does.
              if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
              ev.preventDefault();
              onOpen(shot);
            }}><img src=${shot.thumb ?? shot.preview} alt=${name} loading="lazy" decoding="async" width="160" height="120" onError=${() => setBroken(true)} /></a>`
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

/** The full preview of one shot over the page; Escape, the button or a click on it closes it. */
function Viewer({ shot, onClose }) {
  const dialog = useRef(null);
  useEffect(() => {
    const d = dialog.current;
    if (shot && !d.open) d.showModal();
    if (!shot && d.open) d.close();
  }, [shot]);
  const name = shot ? baseName(shot.path) : '';
  return html`<dialog class="viewer" ref=${dialog} aria-label=${name} onClose=${onClose} onClick=${() => dialog.current.close()}>
    ${
      shot &&
      html`<img src=${shot.preview} alt=${name} />
        <p><span class="name">${name}</span> <button type="button" class="btn">Close</button></p>`
    }
  </dialog>`;
}

export function ContactSheet({ sheet, loadPage }) {
  const { items, next, cursor, back, newer, loading } = sheet;
  const newest = cursor === undefined;
  const [shown, setShown] = useState(undefined);
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
      ${items.map((s) => html`<${Shot} key=${s.fileId} shot=${s} onOpen=${setShown} />`)}
    </ul>
    <nav class="pager" aria-label="Contact sheet pages">
      ${!newest && html`<button type="button" class="btn" onClick=${() => loadPage(back[back.length - 1], back.slice(0, -1))} disabled=${loading}>Newer</button>`}
      ${next !== undefined && next !== null && html`<button type="button" class="btn" onClick=${() => loadPage(next, [...back, cursor])} disabled=${loading}>Older shots</button>`}
    </nav>
    <${Viewer} shot=${shown} onClose=${() => setShown(undefined)} />
  </section>`;
}
