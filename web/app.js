// The dashboard: loads the station's state from the API, then keeps it current from the live events.

import { render } from 'preact';
import { useCallback, useEffect, useReducer, useRef } from 'preact/hooks';
import { ActionButton } from './actions.js';
import { get } from './api.js';
import { Devices } from './devices.js';
import { bytes, headline } from './format.js';
import { html } from './html.js';
import { connect } from './live.js';
import { initialState, PAGE, reduce, staleAfter } from './model.js';
import { Errors, Uploads } from './queue.js';
import { ContactSheet } from './sheet.js';

/** Parts fetched again after events are fetched at most this often. */
const REFRESH_MS = 300;
/** After the daemon closed the stream for good (a restart, a lost token), try again this much later. */
const RECONNECT_MS = 2000;

const optional = (p) => p.catch((err) => (err.status === 404 ? undefined : Promise.reject(err)));

/**
 * Each part of the state and how to fetch it. `known.uploads` is whether the station has an upload target
 * (its `uploads`): without one there is no queue to ask for.
 */
const fetchers = {
  station: (dispatch, known) =>
    get('station').then((station) => {
      known.uploads = station.uploads !== undefined;
      dispatch({ type: 'station', station });
    }),
  jobs: (dispatch) => get('jobs').then((jobs) => dispatch({ type: 'jobs', jobs })),
  uploads: (dispatch, known) =>
    known.uploads
      ? optional(get('uploads?limit=20')).then((uploads) => dispatch({ type: 'uploads', uploads }))
      : Promise.resolve(dispatch({ type: 'uploads', uploads: undefined })),
  errors: (dispatch) => optional(get('errors')).then((r) => dispatch({ type: 'errors', errors: r?.items ?? [] })),
};

function filesPath(before) {
  return `files?limit=${PAGE}${before === undefined ? '' : `&before=${encodeURIComponent(before)}`}`;
}

function Headline({ station, jobs }) {
  const h = headline(station, [...jobs.values()]);
  return html`<section class=${`headline tone-${h.tone}`} aria-labelledby="headline-title">
    <h1 id="headline-title" aria-live="polite">${h.title}</h1>
    ${h.detail ? html`<p class="detail">${h.detail}</p>` : null}
  </section>`;
}

function TopBar({ station, conn, dispatch }) {
  const camera = (station?.devices ?? []).some((d) => d.kind === 'camera');
  return html`<header class="topbar">
    <div class="who">
      <strong>${station?.name ?? 'Shuttle'}</strong>
      <span class="muted">${station?.version ? ` ${station.version}` : ''}</span>
      <span class=${`conn conn-${conn}`} role="status">${conn === 'live' ? 'live' : conn === 'offline' ? 'reconnecting…' : 'connecting…'}</span>
    </div>
    <ul class="disks" aria-label="Destinations">
      ${(station?.destinations ?? []).map((d) => html`<li key=${d.path} title=${d.path}>${d.path}: <strong>${bytes(d.freeBytes)}</strong> free</li>`)}
    </ul>
    ${camera && html`<${ActionButton} path="capture" label="Capture" title="Take a picture with the tethered camera" done="Shot taken" kind="primary" dispatch=${dispatch} />`}
  </header>`;
}

function App() {
  const [state, dispatch] = useReducer(reduce, initialState);
  const loading = useRef(false);
  const held = useRef([]);
  const timers = useRef({});
  const known = useRef({ uploads: false });

  const loadPage = useCallback((cursor, back) => {
    dispatch({ type: 'sheet-loading' });
    return get(filesPath(cursor)).then(
      (page) => dispatch({ type: 'sheet-page', page, cursor, back }),
      (err) => {
        dispatch({ type: 'sheet-failed' });
        dispatch({ type: 'notice', notice: { ok: false, text: `Shots: ${err.message}` } });
      },
    );
  }, []);

  // At once when nothing was fetched lately (a state change shows without delay), then at most once per
  // REFRESH_MS while events keep coming.
  const refresh = useCallback((parts) => {
    for (const part of parts) {
      const t = timers.current[part];
      if (t) {
        t.dirty = true;
        continue;
      }
      const run = () => {
        const entry = { dirty: false };
        entry.timer = setTimeout(() => {
          delete timers.current[part];
          if (entry.dirty) refresh([part]);
        }, REFRESH_MS);
        timers.current[part] = entry;
        fetchers[part](dispatch, known.current).catch(() => undefined);
      };
      run();
    }
  }, []);

  // Everything at once; events that arrive meanwhile wait and are applied after, in order.
  const loadAll = useCallback(async () => {
    loading.current = true;
    try {
      // The upload queue after the station, which says whether there is one.
      const { station, uploads, ...rest } = fetchers;
      await Promise.all([
        station(dispatch, known.current).then(() => uploads(dispatch, known.current)),
        ...Object.values(rest).map((f) => f(dispatch, known.current)),
        loadPage(undefined, []),
      ]);
    } catch (err) {
      if (err.status !== 401) dispatch({ type: 'notice', notice: { ok: false, text: `Loading: ${err.message}` } });
    } finally {
      loading.current = false;
      const events = held.current;
      held.current = [];
      if (events.length) {
        dispatch({ type: 'events', events });
        // What they changed may have been read before they happened.
        refresh(staleAfter(events));
      }
    }
  }, [loadPage, refresh]);

  useEffect(() => {
    let close;
    let retry;
    const open = () => {
      close = connect({
        onReset: () => void loadAll(),
        onEvents: (events) => {
          if (loading.current) {
            held.current.push(...events);
            return;
          }
          dispatch({ type: 'events', events });
          refresh(staleAfter(events));
        },
        onConn: (conn, closed) => {
          dispatch({ type: 'conn', conn });
          if (!closed) return;
          // The browser gave up (the daemon refused the stream): loading shows why (a 401 goes to the
          // login page) and shows the state without live updates until a new stream opens.
          close();
          void loadAll();
          retry = setTimeout(open, RECONNECT_MS);
        },
      });
    };
    open();
    return () => {
      clearTimeout(retry);
      close?.();
      for (const t of Object.values(timers.current)) clearTimeout(t.timer);
    };
  }, [loadAll, refresh]);

  return html`
    <${TopBar} station=${state.station} conn=${state.conn} dispatch=${dispatch} />
    <${Headline} station=${state.station} jobs=${state.jobs} />
    <p class=${`notice ${state.notice ? (state.notice.ok ? 'ok' : 'bad') : ''}`} role="status" aria-live="polite">${state.notice?.text ?? ''}</p>
    <div class="layout">
      <div class="main-col">
        <${Devices} station=${state.station} jobs=${state.jobs} dispatch=${dispatch} />
        <${ContactSheet} sheet=${state.sheet} loadPage=${loadPage} />
      </div>
      <aside class="side-col">
        <${Uploads} station=${state.station} uploads=${state.uploads} dispatch=${dispatch} />
        <${Errors} errors=${state.errors} />
      </aside>
    </div>
  `;
}

render(html`<${App} />`, document.getElementById('app'));
