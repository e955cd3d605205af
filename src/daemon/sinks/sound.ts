import { execFile, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { SoundConfig } from '../../config/index.js';
import { ShuttleError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { EventHub } from '../events.js';
import type { JobSnapshot } from '../status.js';

type Sound = 'done' | 'failed';

/** A sound longer than this is cut off: the next one must not wait behind a stuck player. */
const PLAY_TIMEOUT_MS = 30_000;

/**
 * A sound when a job ends, for a crew that is not looking at the light: `done` when a card or camera
 * job verified every file (its device is safe to pull), `failed` when a job failed. Played with ALSA's
 * aplay, one at a time; while one plays, one more waits at most (jobs ending together make one more
 * sound, not a queue of them).
 */
export class SoundSink {
  readonly #o: { config: SoundConfig; logger: Logger };
  readonly #unsubscribe: () => void;
  #playing: Promise<void> | undefined;
  #next: Sound | undefined;

  private constructor(config: SoundConfig, hub: EventHub, logger: Logger) {
    this.#o = { config, logger };
    this.#unsubscribe = hub.subscribe((e) => {
      if (e.type !== 'job.finished') return;
      const sound = soundFor(e.job);
      if (sound !== undefined && config[sound] !== undefined) this.#play(sound);
    });
  }

  /** CONFIG_INVALID when aplay is missing or a sound file cannot be read: refused at start, not at the first card. */
  static start(config: SoundConfig, hub: EventHub, logger: Logger): SoundSink {
    for (const sound of ['done', 'failed'] as const) {
      const file = config[sound];
      if (file === undefined) continue;
      try {
        accessSync(file, constants.R_OK);
      } catch (cause) {
        throw new ShuttleError('CONFIG_INVALID', `[sound] ${sound}: cannot read ${file}`, { cause, context: { key: `sound.${sound}`, path: file } });
      }
    }
    const probe = spawnSync('aplay', ['--version'], { stdio: 'ignore' });
    if (probe.error !== undefined) {
      throw new ShuttleError('CONFIG_INVALID', '[sound] needs aplay (Debian package alsa-utils), which is not installed', { cause: probe.error, context: { key: 'sound' } });
    }
    return new SoundSink(config, hub, logger);
  }

  #play(sound: Sound): void {
    if (this.#playing !== undefined) {
      this.#next = sound;
      return;
    }
    this.#playing = this.#player(sound).finally(() => {
      this.#playing = undefined;
      const next = this.#next;
      this.#next = undefined;
      if (next !== undefined) this.#play(next);
    });
  }

  #player(sound: Sound): Promise<void> {
    const { config, logger } = this.#o;
    const file = config[sound]!;
    return new Promise((resolve) => {
      execFile('aplay', ['-q', '-D', config.device, file], { timeout: PLAY_TIMEOUT_MS }, (err, _stdout, stderr) => {
        if (err) logger.warn({ sound, file, device: config.device, error: stderr.trim() || err.message }, 'the sound could not be played');
        else logger.info({ sound, file, device: config.device }, 'sound played');
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    this.#unsubscribe();
    this.#next = undefined;
    await this.#playing;
  }
}

/** The sound a finished job asks for, if any: hot folders' routine batches make none. */
function soundFor(job: JobSnapshot): Sound | undefined {
  if (job.state === 'failed') return 'failed';
  if (job.state === 'done' && job.kind !== 'hotfolder' && job.result?.status === 'complete' && job.result.failed === 0) return 'done';
  return undefined;
}
