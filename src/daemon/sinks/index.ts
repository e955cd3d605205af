import { join } from 'node:path';
import { resolveSecret, type Config } from '../../config/index.js';
import type { Logger } from '../../log.js';
import type { Journal } from '../../store/journal.js';
import { buildCardReport, writeCardReport } from '../card-report.js';
import type { EventHub } from '../events.js';
import type { FinishedIngest } from '../ingest-job.js';
import type { StationStateTracker } from '../station-state.js';
import type { DaemonStatus, JobKind } from '../status.js';
import { AlertCenter } from './alerts/alerts.js';
import { emailChannel, ntfyChannel, webhookChannel, type AlertChannel } from './alerts/channels.js';
import { MqttSink } from './mqtt.js';
import { SoundSink } from './sound.js';

/**
 * What the daemon tells the outside world beyond its own API: MQTT, notifications, and the per-card
 * report they and the destinations carry. Built from the config at start (a secret that cannot be read
 * stops the start, like any other config error); each part listens to the event hub on its own.
 */

export interface SinksOptions {
  config: Config;
  hub: EventHub;
  station: StationStateTracker;
  status: () => DaemonStatus;
  jobKind: (job: number) => JobKind | undefined;
  journal: Journal;
  destinations: readonly { path: string }[];
  logger: Logger;
  env: NodeJS.ProcessEnv;
}

/** The station as the retained MQTT state topic shows it: no timestamps, so an unchanged state is not sent again. */
export function stationState(o: Pick<SinksOptions, 'station' | 'status'>): Record<string, unknown> {
  const view = o.station.view;
  const s = o.status();
  return {
    version: s.version,
    state: view.state,
    reason: view.reason,
    devices: view.devices,
    jobs: s.jobs.active.map((j) => ({ id: j.id, kind: j.kind, label: j.label, state: j.state })),
    uploads: s.uploads ? { target: s.uploads.target, state: s.uploads.state, depth: s.uploads.depth, bytesPending: s.uploads.bytesPending } : null,
  };
}

function alertChannels(config: Config, env: NodeJS.ProcessEnv): AlertChannel[] {
  const n = config.notify;
  if (!n) return [];
  const channels: AlertChannel[] = [];
  if (n.webhook) {
    const secret = resolveSecret({ value: n.webhook.secret, file: n.webhook.secretFile, credential: 'webhook_secret', what: 'the webhook secret' }, env);
    channels.push(webhookChannel(n.webhook.url, secret));
  }
  if (n.ntfy) {
    const token = resolveSecret({ value: n.ntfy.token, file: n.ntfy.tokenFile, credential: 'ntfy_token', what: 'the ntfy token' }, env);
    channels.push(ntfyChannel(n.ntfy.url, token));
  }
  if (n.email) {
    const e = n.email;
    const password = resolveSecret({ value: e.password, file: e.passwordFile, credential: 'smtp_password', what: 'the SMTP password' }, env);
    channels.push(emailChannel({ smtp: e.smtp, from: e.from, to: e.to, username: e.username, password }));
  }
  return channels;
}

export class Sinks {
  readonly #o: SinksOptions;
  readonly mqtt: MqttSink | undefined;
  readonly alerts: AlertCenter | undefined;
  readonly sound: SoundSink | undefined;

  private constructor(o: SinksOptions, mqtt: MqttSink | undefined, alerts: AlertCenter | undefined, sound: SoundSink | undefined) {
    this.#o = o;
    this.mqtt = mqtt;
    this.alerts = alerts;
    this.sound = sound;
  }

  static start(o: SinksOptions): Sinks {
    const ev = o.config.events;
    let mqtt: MqttSink | undefined;
    if (ev?.mqtt !== undefined) {
      const password = resolveSecret({ value: ev.mqttPassword, file: ev.mqttPasswordFile, credential: 'mqtt_password', what: 'the MQTT password' }, o.env);
      mqtt = new MqttSink({
        url: ev.mqtt,
        username: ev.mqttUsername,
        password,
        station: o.config.station,
        hub: o.hub,
        state: () => stationState(o),
        progressMs: ev.mqttProgressMs,
        queueLimit: ev.mqttQueue,
        logger: o.logger,
      });
    }
    let alerts: AlertCenter | undefined;
    const channels = alertChannels(o.config, o.env);
    if (o.config.notify && channels.length === 0) o.logger.warn('[notify] names no webhook, ntfy or email: no notification is sent');
    if (o.config.notify && channels.length > 0) {
      alerts = new AlertCenter({
        config: o.config.notify,
        station: o.config.station,
        channels,
        hub: o.hub,
        destinations: o.destinations,
        uploads: () => o.status().uploads,
        logger: o.logger,
      });
    }
    const sound = o.config.sound ? SoundSink.start(o.config.sound, o.hub, o.logger) : undefined;
    mqtt?.start();
    alerts?.start();
    return new Sinks(o, mqtt, alerts, sound);
  }

  /** Writes a finished card or camera ingest's report to its destinations and hands it to the notifications. */
  async report(done: FinishedIngest, logger: Logger): Promise<void> {
    // A hot folder's batches are routine: their files are in the manifests, the journal and the log.
    if (this.#o.jobKind(done.job) === 'hotfolder') return;
    const up = this.#o.status().uploads;
    const cloud = up
      ? {
          target: up.target,
          state: `the verified files are queued for upload (uploader ${up.state}, ${up.depth} files waiting); each counts as uploaded once verified in the cloud`,
        }
      : { state: 'no upload configured' };
    const report = await buildCardReport(done, { station: this.#o.config.station, journal: this.#o.journal, destinations: this.#o.destinations, cloud });
    await writeCardReport(report);
    for (const d of report.destinations) if (d.reportError !== undefined) logger.warn({ destination: d.path, error: d.reportError }, 'card report not written there');
    const written = report.destinations.flatMap((d) => (d.report ? [join(d.path, d.report.text)] : []));
    if (written.length > 0) logger.info({ reports: written }, 'card report written');
    this.alerts?.addReport(report);
  }

  async close(): Promise<void> {
    await Promise.all([this.mqtt?.close(), this.alerts?.close(), this.sound?.close()]);
  }
}
