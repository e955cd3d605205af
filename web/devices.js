// One card per attached device (and per job that has no device: hot folders, requested folders), with
// its progress and, in large type, whether it is safe to pull.

import { ActionButton } from './actions.js';
import { baseName, bytes, deviceStateText, duration, isFinal, percent, rate } from './format.js';
import { html } from './html.js';

function Bar({ label, done, total, text }) {
  const pct = percent(done, total);
  return html`<div class="bar-row">
    <div class="bar-label"><span>${label}</span><span>${text}</span></div>
    <div class="bar" role="progressbar" aria-label=${label} aria-valuemin="0" aria-valuemax="100" aria-valuenow=${pct} aria-valuetext=${text}>
      <div class="bar-fill" style=${`width:${pct}%`}></div>
    </div>
  </div>`;
}

function Progress({ job }) {
  const p = job.progress;
  if (!p) return html`<p class="muted">${job.state === 'queued' ? `Queued${job.waitingFor ? `: waiting for ${job.waitingFor}` : ''}` : 'Listing…'}</p>`;
  const left = duration(job.etaSeconds);
  return html`<div class="progress">
    <${Bar} label="Files" done=${p.filesDone} total=${p.filesTotal} text=${`${p.filesDone} of ${p.filesTotal} · ${p.filesTotal - p.filesDone} left`} />
    <${Bar} label="Bytes" done=${p.bytesDone} total=${p.bytesTotal} text=${`${bytes(p.bytesDone)} of ${bytes(p.bytesTotal)} · ${bytes(p.bytesTotal - p.bytesDone)} left`} />
    <dl class="facts">
      <div><dt>Current</dt><dd class="current" title=${p.current ?? ''}>${p.current ? baseName(p.current) : '–'}</dd></div>
      <div><dt>Rate</dt><dd>${rate(job.rateBytesPerSec)}</dd></div>
      <div><dt>Time left</dt><dd>${left ?? '–'}</dd></div>
    </dl>
  </div>`;
}

function Result({ job }) {
  const r = job.result;
  if (job.state === 'cancelled') return html`<p class="muted">Cancelled</p>`;
  if (!r) return job.error ? html`<p class="bad">${job.error.message}</p>` : null;
  return html`<p class=${r.failed > 0 || r.status !== 'complete' ? 'bad' : 'muted'}>
    ${r.copied} copied, ${r.alreadyVerified} already safe${r.failed ? `, ${r.failed} FAILED` : ''}${r.skipped?.length ? `, ${r.skipped.length} skipped` : ''} · ${bytes(r.bytes)}
  </p>`;
}

function JobBody({ job, dispatch, card = false }) {
  if (!job) return null;
  const active = !isFinal(job);
  return html`<div class="job">
    ${active ? html`<${Progress} job=${job} />` : html`<${Result} job=${job} />`}
    ${
      active &&
      html`<${ActionButton}
        path=${`jobs/${job.id}/cancel`}
        label="Cancel"
        title=${
          card
            ? `Stop copying ${job.label}, then unmount it and power it off: files already verified stay verified`
            : `Stop copying ${job.label}: files already verified stay verified`
        }
        done=${`Cancelling ${job.label}`}
        kind="danger"
        dispatch=${dispatch}
      />`
    }
  </div>`;
}

function DeviceCard({ device, job, dispatch }) {
  const running = job !== undefined && !isFinal(job);
  // Every copy here is verified and the wipe only waits for the uploads: ejecting gives the wipe up.
  const cloudOnly = running && job.progress?.phase === 'waiting-for-cloud';
  return html`<article class=${`card state-${device.state}`} aria-label=${`${device.kind} ${device.label}`} data-device=${device.id}>
    <header>
      <h3>${device.label}</h3>
      <span class="kind">${device.kind === 'camera' ? 'Camera' : 'Card'}</span>
    </header>
    <p class="device-state" role="status">${cloudOnly ? 'Verified here — waiting for the cloud to wipe it' : deviceStateText(device.state)}</p>
    <${JobBody} job=${job} dispatch=${dispatch} card=${device.kind === 'card'} />
    ${
      device.kind === 'card' &&
      html`<${ActionButton}
        path=${`devices/${encodeURIComponent(device.id)}/eject`}
        label="Eject"
        title=${
          cloudOnly
            ? `Unmount ${device.label} and power it off now: its copies here are verified, it will not be wiped`
            : running
              ? 'Cancel or finish the copy first'
              : `Unmount ${device.label} and power it off`
        }
        done=${`Ejected ${device.label}`}
        disabled=${running && !cloudOnly}
        dispatch=${dispatch}
      />`
    }
  </article>`;
}

function JobCard({ job, dispatch }) {
  return html`<article class=${`card state-${isFinal(job) ? job.state : 'ingesting'}`} aria-label=${`job ${job.label}`} data-job=${job.id}>
    <header>
      <h3>${job.label}</h3>
      <span class="kind">${job.kind === 'hotfolder' ? 'Hot folder' : job.kind}</span>
    </header>
    <${JobBody} job=${job} dispatch=${dispatch} />
  </article>`;
}

export function Devices({ station, jobs, dispatch }) {
  const devices = station?.devices ?? [];
  const owned = new Set(devices.map((d) => d.job).filter((id) => id !== undefined));
  const loose = [...jobs.values()].filter((j) => !owned.has(j.id) && !isFinal(j)).sort((a, b) => a.id - b.id);
  return html`<section class="devices" aria-labelledby="devices-h">
    <h2 id="devices-h">Devices and jobs</h2>
    ${devices.length === 0 && loose.length === 0 ? html`<p class="muted">No card or camera attached.</p>` : null}
    <div class="cards">
      ${devices.map((d) => html`<${DeviceCard} key=${`d${d.id}`} device=${d} job=${d.job === undefined ? undefined : jobs.get(d.job)} dispatch=${dispatch} />`)}
      ${loose.map((j) => html`<${JobCard} key=${`j${j.id}`} job=${j} dispatch=${dispatch} />`)}
    </div>
  </section>`;
}
