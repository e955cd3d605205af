// What the dashboard says, as pure functions of the API's figures: the page renders them and the tests
// can check them without a browser.

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Bytes in decimal units, as disks and cards are sold: `1.2 GB`. */
export function bytes(n) {
  if (!Number.isFinite(n) || n < 0) return '–';
  let u = 0;
  let v = n;
  while (v >= 1000 && u < UNITS.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 || v >= 100 ? Math.round(v) : v.toFixed(1)} ${UNITS[u]}`;
}

export function rate(bytesPerSec) {
  return bytesPerSec === undefined || bytesPerSec === null ? '–' : `${bytes(bytesPerSec)}/s`;
}

/** A duration to come, rounded the way a person says it: `40 s`, `2 min`, `1 h 5 min`. */
export function duration(seconds) {
  if (seconds === undefined || seconds === null || !Number.isFinite(seconds)) return undefined;
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}

export function percent(done, total) {
  if (!total) return 0;
  return Math.min(100, Math.floor((done * 100) / total));
}

const FINAL = new Set(['done', 'failed', 'cancelled', 'interrupted']);

export function isFinal(job) {
  return FINAL.has(job.state);
}

/** The running jobs' figures added up, for the one line at the top. */
export function totals(jobs) {
  const t = { filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0, eta: undefined, running: 0, queued: 0 };
  for (const j of jobs) {
    if (isFinal(j)) continue;
    if (j.state === 'queued') t.queued++;
    else t.running++;
    const p = j.progress;
    if (p) {
      t.filesDone += p.filesDone;
      t.filesTotal += p.filesTotal;
      t.bytesDone += p.bytesDone;
      t.bytesTotal += p.bytesTotal;
    }
    if (j.etaSeconds !== undefined) t.eta = Math.max(t.eta ?? 0, j.etaSeconds);
  }
  return t;
}

/**
 * The station's state in a few words for across the room, with a line of detail under it.
 * `tone` picks the colours: idle, busy, safe, attention.
 */
export function headline(station, jobs) {
  if (!station) return { tone: 'idle', title: 'Connecting…', detail: '' };
  switch (station.state) {
    case 'safe-to-pull':
      return { tone: 'safe', title: 'SAFE TO PULL', detail: station.reason ?? '' };
    case 'attention':
      return { tone: 'attention', title: `ATTENTION: ${station.reason ?? 'see errors'}`, detail: 'Do not pull: something was not verified' };
    case 'ingesting':
    case 'verifying': {
      const t = totals(jobs);
      if (t.filesTotal === 0) return { tone: 'busy', title: station.state === 'verifying' ? 'Verifying…' : 'Copying…', detail: station.reason ?? '' };
      const pct = t.bytesTotal > 0 ? percent(t.bytesDone, t.bytesTotal) : percent(t.filesDone, t.filesTotal);
      const left = duration(t.eta);
      return {
        tone: 'busy',
        title: `Copying ${pct}% — ${t.filesDone} of ${t.filesTotal} files${left ? `, ${left} left` : ''}`,
        detail: station.reason ?? '',
      };
    }
    case 'uploading':
      return { tone: 'busy', title: 'Uploading', detail: station.reason ?? '' };
    default:
      return { tone: 'idle', title: (station.devices ?? []).length > 0 ? 'Waiting' : 'Waiting for card', detail: station.reason ?? '' };
  }
}

/** A device's state in the words its card shows. */
export function deviceStateText(state) {
  switch (state) {
    case 'safe-to-pull':
      return 'SAFE TO PULL';
    case 'ingesting':
      return 'Copying — do not pull';
    case 'queued':
      return 'Queued — do not pull';
    case 'attention':
      return 'ATTENTION — do not pull';
    default:
      return 'Waiting';
  }
}

/** The last part of a path, for a caption. */
export function baseName(path) {
  const i = path.lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}

export function timeOfDay(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}
