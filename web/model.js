// The page's state and how each API answer and live event changes it: one pure reducer, so that what
// the page shows depends only on what the daemon said, in order.

import { previewUrl } from './api.js';
import { isFinal } from './format.js';

/** Shots per page of the contact sheet: the page holds at most this many, however long the session. */
export const PAGE = 60;
/** Finished jobs kept for the device cards (a card shows its last job until it is pulled). */
const FINISHED_KEPT = 50;
const ERRORS_KEPT = 50;

export const initialState = {
  station: undefined,
  /** Jobs by id: the active ones and recently finished ones. */
  jobs: new Map(),
  sheet: {
    items: [],
    /** Cursor of the next older page (`before=`), undefined at the end. */
    next: undefined,
    /** The `before=` that loaded the page shown: undefined for the newest page, which the live events fill. */
    cursor: undefined,
    /** The cursors of the newer pages, to go back to. */
    back: [],
    /** Shots verified while an older page is shown. */
    newer: 0,
    loading: false,
  },
  uploads: undefined,
  errors: [],
  /** `connecting`, `live`, or `offline` (the browser retries on its own). */
  conn: 'connecting',
  /** The answer to the last button pressed: { ok, text }. */
  notice: undefined,
};

function withJob(jobs, job) {
  const next = new Map(jobs);
  next.set(job.id, job);
  const finished = [...next.values()].filter(isFinal);
  if (finished.length > FINISHED_KEPT) {
    finished.sort((a, b) => a.id - b.id);
    for (const j of finished.slice(0, finished.length - FINISHED_KEPT)) next.delete(j.id);
  }
  return next;
}

/** A shot as the contact sheet keeps it, from an item of /api/v1/files. */
export function shotFromItem(item) {
  const uploaded = (item.cloud ?? []).find((c) => c.state === 'uploaded');
  return {
    fileId: item.fileId,
    job: item.job,
    source: item.source,
    path: item.path,
    size: item.size,
    state: item.state,
    copies: (item.copies ?? []).filter((c) => c.state === 'verified' && c.path).map((c) => `${c.destination}/${c.path}`),
    preview: item.preview ? previewUrl(item.fileId) : undefined,
    thumb: item.preview ? previewUrl(item.fileId, undefined, true) : undefined,
    uploaded: uploaded ? { key: uploaded.key, at: uploaded.uploadedAt } : undefined,
  };
}

function shotFromEvent(e) {
  return {
    fileId: e.fileId,
    job: e.job,
    source: e.source,
    path: e.path,
    size: e.size,
    state: e.type === 'file.verified' ? 'verified' : 'failed',
    copies: e.copies,
    preview: e.preview ? previewUrl(e.fileId, e.id) : undefined,
    thumb: e.preview ? previewUrl(e.fileId, e.id, true) : undefined,
    at: e.at,
  };
}

function addShot(sheet, shot) {
  if (sheet.cursor !== undefined) return { ...sheet, newer: sheet.newer + 1 };
  const rest = sheet.items.filter((s) => s.fileId !== shot.fileId);
  const items = [shot, ...rest];
  if (items.length <= PAGE) return { ...sheet, items };
  const kept = items.slice(0, PAGE);
  // The shot pushed off this page is the first of the next one: page on from the last one kept.
  return { ...sheet, items: kept, next: kept[kept.length - 1].fileId };
}

function mapShots(sheet, match, change) {
  let hit = false;
  const items = sheet.items.map((s) => {
    if (!match(s)) return s;
    hit = true;
    return { ...s, ...change(s) };
  });
  return hit ? { ...sheet, items } : sheet;
}

/** A failed shot on the sheet shows why, from the error event naming its job and path. */
function failShot(sheet, e) {
  if (e.path === undefined) return sheet;
  return mapShots(
    sheet,
    (s) => s.state === 'failed' && s.job === e.job && s.path === e.path,
    () => ({ error: `${e.code}: ${e.message}` }),
  );
}

export function reduce(state, action) {
  switch (action.type) {
    case 'station':
      return { ...state, station: action.station };
    case 'jobs': {
      const jobs = new Map();
      for (const j of [...action.jobs.recent, ...action.jobs.active]) jobs.set(j.id, j);
      return { ...state, jobs };
    }
    case 'uploads':
      return { ...state, uploads: action.uploads };
    case 'uploads-paused': {
      // Pausing publishes no event: the answer to the button says what the uploader does now.
      const change = { paused: action.paused, state: action.state };
      const station = state.station?.uploads ? { ...state.station, uploads: { ...state.station.uploads, ...change } } : state.station;
      return { ...state, station, uploads: state.uploads ? { ...state.uploads, ...change } : state.uploads };
    }
    case 'errors':
      // The API lists them oldest first, with the failed files; the page shows the newest first.
      return {
        ...state,
        errors: action.errors
          .filter((e) => e.type === 'error')
          .reverse()
          .slice(0, ERRORS_KEPT),
      };
    case 'conn':
      return { ...state, conn: action.conn };
    case 'notice':
      return { ...state, notice: action.notice };
    case 'sheet-loading':
      return { ...state, sheet: { ...state.sheet, loading: true } };
    case 'sheet-failed':
      return { ...state, sheet: { ...state.sheet, loading: false } };
    case 'sheet-page': {
      const items = action.page.items.map(shotFromItem);
      const { cursor, back } = action;
      return { ...state, sheet: { items, next: action.page.next, cursor, back, newer: cursor === undefined ? 0 : state.sheet.newer, loading: false } };
    }
    case 'events':
      return action.events.reduce(applyEvent, state);
    default:
      return state;
  }
}

/** One live event from /api/v1/events. */
export function applyEvent(state, e) {
  switch (e.type) {
    case 'job.queued':
    case 'job.started':
    case 'job.progress':
    case 'job.finished':
      return { ...state, jobs: withJob(state.jobs, e.job) };
    case 'file.verified':
    case 'file.failed':
      return { ...state, sheet: addShot(state.sheet, shotFromEvent(e)) };
    case 'preview.ready':
      return {
        ...state,
        sheet: mapShots(
          state.sheet,
          (s) => s.fileId === e.fileId,
          (s) => ({ preview: previewUrl(s.fileId, e.id), thumb: previewUrl(s.fileId, e.id, true) }),
        ),
      };
    case 'file.uploaded':
      return {
        ...state,
        sheet: mapShots(
          state.sheet,
          (s) => s.fileId === e.fileId,
          () => ({ uploaded: { key: e.key, at: e.at } }),
        ),
      };
    case 'error':
      return { ...state, errors: [e, ...state.errors].slice(0, ERRORS_KEPT), sheet: failShot(state.sheet, e) };
    case 'station.state':
      return state.station ? { ...state, station: { ...state.station, state: e.state, reason: e.reason } } : state;
    default:
      return state;
  }
}

/** What to fetch again after these events: the parts the events do not carry in full. */
export function staleAfter(events) {
  const stale = new Set();
  for (const e of events) {
    if (e.type === 'job.progress' || e.type === 'preview.ready') continue;
    if (e.type.startsWith('device.') || e.type.startsWith('job.') || e.type === 'station.state') stale.add('station');
    if (e.type === 'file.uploaded' || e.type === 'file.verified' || e.type.startsWith('upload')) stale.add('uploads');
    // An upload that failed for good or found a local copy damaged changed the queue and its counts.
    if (e.type === 'error' && e.upload) {
      stale.add('uploads');
      stale.add('station');
    }
  }
  return stale;
}
