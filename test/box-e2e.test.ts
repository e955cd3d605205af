import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, cp, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createServer, connect, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runCli } from './support/cli.js';
import { listTree } from './support/tree.js';
import { bootBox, ensureBoxImage, type Box, type GuestRun } from './box/vm.js';
import { freePorts } from './support/ports.js';
import { startSwift, type SwiftServer } from './support/swift.js';

/**
 * End to end on a real systemd box: a Debian guest under QEMU with systemd as PID 1, udev, no Node and
 * no npm. The artifact from scripts/build-dist.sh is installed by its own installer inside the guest;
 * then USB card readers holding FAT32 cards (MBR partition, as cameras format them) are hot-plugged over
 * QMP. Nothing is typed in the guest for an ingest: udev's rule starts shuttle-card@sda1.service, which
 * mounts the card read-only, asks the daemon to ingest it and waits, then unmounts it and powers the
 * reader off. A card pulled in the middle is stopped cleanly and finished when it comes back.
 *
 * Slow: the image build takes about 2 minutes the first time (cached in .tmp/box), a TCG boot 1–2
 * minutes, the whole run 6–10 minutes. What the guest said stays in .tmp/box/last-out.
 */

const REPO = fileURLToPath(new URL('..', import.meta.url));
const PARTITION_START_SECTOR = 2048;
const MINUTE = 60_000;

let work: string;
let artifactDir: string;
let outDir: string;
let box: Box;
/** Hashes of every file on every card made so far: anything at a destination must be one of them. */
const sourceHashes = new Set<string>();

function sh(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

interface Card {
  tree: string;
  image: string;
  /** Content hashes of every file on the card. */
  hashes: Set<string>;
  /** Each file's content hash by its path on the card. */
  byPath: Map<string, string>;
  imageHash: string;
}

/** A card as a camera formats it: an MBR with one FAT32 (LBA) partition from sector 2048, a sample shoot copied in. */
async function makeCard(name: string, sizeMiB: number, sampleArgs: string[], extra: Record<string, string> = {}): Promise<Card> {
  const tree = join(work, `${name}-tree`);
  const sample = await runCli(['sample', tree, ...sampleArgs]);
  if (sample.code !== 0) throw new Error(`shuttle sample failed: ${sample.stderr}`);
  for (const [rel, text] of Object.entries(extra)) await writeFile(join(tree, rel), text);
  const image = join(work, `${name}.img`);
  const sectors = (sizeMiB * 1024 * 1024) / 512;
  const fh = await open(image, 'w');
  try {
    await fh.truncate(sizeMiB * 1024 * 1024);
    const mbr = Buffer.alloc(512);
    mbr[446 + 4] = 0x0c; // FAT32, LBA
    mbr.writeUInt32LE(PARTITION_START_SECTOR, 446 + 8);
    mbr.writeUInt32LE(sectors - PARTITION_START_SECTOR, 446 + 12);
    mbr.writeUInt16LE(0xaa55, 510);
    await fh.write(mbr, 0, 512, 0);
  } finally {
    await fh.close();
  }
  const partitionKiB = ((sectors - PARTITION_START_SECTOR) * 512) / 1024;
  sh('mkfs.vfat', ['-F', '32', '-n', 'EOS_DIGITAL', `--offset=${PARTITION_START_SECTOR}`, image, String(partitionKiB)]);
  const top = sh('ls', ['-A', tree])
    .split('\n')
    .filter(Boolean)
    .map((n) => join(tree, n));
  sh('mcopy', ['-s', '-i', `${image}@@${PARTITION_START_SECTOR * 512}`, ...top, '::/']);
  const byPath = new Map([...(await listTree(tree))].map(([rel, f]) => [rel, f.sha256]));
  const hashes = new Set(byPath.values());
  for (const h of hashes) sourceHashes.add(h);
  return { tree, image, hashes, byPath, imageHash: await sha256(image) };
}

/** Shell helpers every guest script starts with. */
const PRELUDE = String.raw`
# count PATTERN: lines of Shuttle's units' journal matching the extended regex PATTERN
count() { journalctl -o cat --no-pager -u shuttle.service -u 'shuttle-card@*' | grep -cE "$1" || true; }
# await PATTERN N SECONDS: wait until count PATTERN reaches N
await() { end=$(( $(date +%s) + $3 )); while [ "$(count "$1")" -lt "$2" ]; do [ "$(date +%s)" -ge "$end" ] && { echo "timed out waiting for $2 x $1"; return 1; }; sleep 0.5; done; }
`;
/** The card unit's end, however it ended. */
const CARD_UNIT_ENDED = String.raw`shuttle-card@sda1\.service: (Deactivated successfully|Failed with result|Skipped due to)`;
const JOB_RUNNING = String.raw`"state":"running".*"source":"/media/shuttle/sda1"`;

/**
 * How the daemon's last job on the card ended, from its own log: the job may have been started by its
 * mount watcher or by the card unit's request, and a request client stopped with its unit prints nothing.
 */
function lastCardJobEnd(journal: string): string | undefined {
  return [...journal.matchAll(/"source":"\/media\/shuttle\/sda1"[^\n]*"msg":"job (done|cancelled|failed)"/g)].pop()?.[1];
}

async function guest(script: string, timeoutMs = 5 * MINUTE): Promise<GuestRun> {
  return box.run(`${PRELUDE}\n${script}`, timeoutMs);
}

async function ok(script: string, timeoutMs?: number): Promise<string> {
  const r = await guest(script, timeoutMs);
  if (r.rc !== 0) throw new Error(`guest script failed (${r.rc}):\n${script}\n${r.output}`);
  return r.output;
}

/** Every file at the destination (Shuttle's own folders aside) as path → sha256, temp files included. */
async function destinationFiles(): Promise<Map<string, string>> {
  const out = await ok(`cd /srv/photos && find . -type f ! -path './.shuttle/*' ! -path './ascmhl/*' ! -path './shuttle-reports/*' -exec sha256sum {} +`);
  return new Map(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [hash, path] = l.split(/\s+/, 2) as [string, string];
        return [path.replace(/^\.\//, ''), hash];
      }),
  );
}

/** Destination files (not Shuttle's own folders) as hash → path, and any temp files left. */
async function destination(): Promise<{ files: Map<string, string>; temps: string[] }> {
  const files = new Map<string, string>();
  const temps: string[] = [];
  for (const [path, hash] of await destinationFiles()) {
    if (path.endsWith('.shuttle-tmp')) temps.push(path);
    else files.set(hash, path);
  }
  return { files, temps };
}

async function plug(id: string, node: string): Promise<number> {
  const at = Date.now() / 1000;
  await box.qmp.execute('device_add', { driver: 'usb-storage', id, drive: node, removable: true });
  return at;
}

async function unplug(id: string): Promise<void> {
  await box.qmp.execute('device_del', { id });
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the box test builds a debootstrap image and runs QEMU with 9p shares: run as root');
  const image = ensureBoxImage();
  await mkdir(join(REPO, '.tmp', 'box'), { recursive: true });
  work = await mkdtemp(join(REPO, '.tmp', 'box', 'run-'));
  artifactDir = join(work, 'artifact');
  outDir = join(work, 'out');
  await mkdir(artifactDir);
  await mkdir(outDir);
  await chmod(outDir, 0o777);
  const built = sh(join(REPO, 'scripts/build-dist.sh'), ['--out', join(work, 'dist')])
    .trim()
    .split('\n')
    .pop()!;
  await copyFile(built, join(artifactDir, built.split('/').pop()!));
  // The installer as a user runs it: next to the downloaded tarball.
  await copyFile(join(REPO, 'scripts/install.sh'), join(artifactDir, 'install.sh'));
  box = await bootBox({ image, artifactDir, outDir });
}, 15 * MINUTE);

afterAll(async () => {
  await box?.stop();
  if (!work) return;
  const keep = join(REPO, '.tmp', 'box', 'last-out');
  await rm(keep, { recursive: true, force: true });
  await cp(outDir, keep, { recursive: true, filter: (src) => !src.endsWith('.sock') && !src.endsWith('.img') });
  await rm(work, { recursive: true, force: true });
});

describe.sequential('a box without Node, set up by the installer', () => {
  test(
    'installer-installs-the-tarball-and-leaves-the-daemon-for-after-configuration',
    async () => {
      const out = await ok('bash /artifact/install.sh /artifact/shuttle-*.tar.gz', 5 * MINUTE);
      expect(out).toContain('start it once a destination is set');
      expect((await guest('command -v node npm')).rc).not.toBe(0);
      expect(await ok('id shuttle; ls -l /usr/local/bin/shuttle; systemctl is-enabled shuttle.service')).toMatch(/shuttle[\s\S]*\/opt\/shuttle\/bin\/shuttle[\s\S]*enabled/);
    },
    6 * MINUTE,
  );

  test(
    'daemon-starts-under-the-hardened-unit-once-a-destination-is-set',
    async () => {
      await ok(
        String.raw`
mkdir -p /srv/photos && chown shuttle:shuttle /srv/photos
cat > /etc/shuttle/config.toml <<'EOF'
station = "box"
log_level = "debug"
[[destinations]]
path = "/srv/photos"
name = "primary"
EOF
systemctl restart shuttle.service`,
        3 * MINUTE,
      );
      expect((await ok('systemctl is-active shuttle.service')).trim()).toBe('active');
    },
    4 * MINUTE,
  );

  test('systemd-rates-the-running-daemon-unit-at-most-2.0-exposure', async () => {
    const out = await ok('systemd-analyze security --no-pager shuttle.service');
    const m = /Overall exposure level for shuttle\.service: (\d+\.\d+)/.exec(out);
    expect(m, out).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(2.0);
    await writeFile(join(outDir, 'security.txt'), out);
  });

  test(
    'doctor-finds-user-units-rules-daemon-and-state-in-order',
    async () => {
      const r = await guest('/usr/local/bin/shuttle doctor --json', 3 * MINUTE);
      const checks = (JSON.parse(r.output) as { checks: Array<{ id: string; status: string }> }).checks;
      const status = Object.fromEntries(checks.map((c) => [c.id, c.status]));
      expect(status, r.output).toMatchObject({ 'service-user': 'ok', units: 'ok', rules: 'ok', daemon: 'ok', 'state-dir': 'ok' });
      expect(status['credentials-file']).toBeUndefined();
      // The guest's small disk earns a low-space warning at most.
      expect(status['destination:primary']).not.toBe('fail');
    },
    4 * MINUTE,
  );
});

describe.sequential('a card plugged in', () => {
  let card: Card;
  let pluggedAt: number;
  let mountLine: string;
  let journal: string;

  beforeAll(async () => {
    card = await makeCard('card1', 96, ['--count', '6', '--seed', '7']);
    await box.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'card1', file: { driver: 'file', filename: card.image } });
    pluggedAt = await plug('reader1', 'card1');
    // Record the mount while it exists, then wait for the card unit to end.
    mountLine = await ok(
      String.raw`
end=$(( $(date +%s) + 240 ))
until findmnt -n -o SOURCE,FSTYPE,OPTIONS /media/shuttle/sda1; do [ "$(date +%s)" -ge "$end" ] && exit 1; sleep 0.2; done`,
      5 * MINUTE,
    );
    await ok(`await '${CARD_UNIT_ENDED}' 1 300`, 6 * MINUTE);
    journal = await ok(`journalctl -o short-unix --no-pager -u shuttle.service -u 'shuttle-card@*'`);
    await writeFile(join(outDir, 'journal-card1.txt'), journal);
  }, 12 * MINUTE);

  test('is-mounted-read-only-by-the-card-unit-and-the-card-image-is-untouched', async () => {
    const [source, fstype, options] = mountLine.trim().split(/\s+/);
    expect([source, fstype]).toEqual(['/dev/sda1', 'vfat']);
    expect(options!.split(',')).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev', 'noexec']));
    // A read-write vfat mount would at least have set the volume's dirty flag.
    expect(await sha256(card.image)).toBe(card.imageHash);
  });

  test('is-ingested-by-the-daemon-without-a-command-every-file-at-the-destination', async () => {
    expect(journal).toContain('shuttle-card@sda1.service: Deactivated successfully');
    expect(journal).toMatch(/job \d+ done \(\/media\/shuttle\/sda1\)/);
    const { files, temps } = await destination();
    for (const h of card.hashes) expect(files.has(h), `a file of the card (sha256 ${h}) is missing at the destination`).toBe(true);
    expect(temps).toEqual([]);
  });

  test('is-unmounted-and-its-reader-powered-off-afterwards', async () => {
    expect(journal).toContain('unmounted /media/shuttle/sda1');
    expect(journal).toMatch(/powered off \S+ \(\/dev\/sda\)/);
    expect((await guest('findmnt /media/shuttle/sda1')).rc).not.toBe(0);
    expect((await ok('ls /sys/block')).split(/\s+/)).not.toContain('sda');
  });

  test('plug-to-ingest-timings-are-recorded', async () => {
    const kernel = await ok('journalctl -o short-unix --no-pager -k');
    const t = (text: string, re: RegExp): number | undefined => {
      const line = text.split('\n').find((l) => re.test(l));
      return line ? Number(line.split(' ')[0]) : undefined;
    };
    const timings = {
      pluggedAtHost: pluggedAt,
      usbEnumerated: t(kernel, /usb \S+: new .*USB device number/),
      diskAttached: t(kernel, /\[sda\] Attached SCSI/),
      unitStarting: t(journal, /Starting .*shuttle-card@sda1/i),
      mounted: t(journal, /shuttle-card sda1: mounted/),
      jobRunning: t(journal, new RegExp(JOB_RUNNING)),
      jobDone: t(journal, /"state":"done".*"source":"\/media\/shuttle\/sda1"/),
      poweredOff: t(journal, /shuttle-card sda1: powered off/),
    };
    await writeFile(join(REPO, '.tmp', 'box', 'last-timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
    for (const [k, v] of Object.entries(timings)) expect(v, k).toBeDefined();
    expect(timings.jobRunning! - timings.diskAttached!).toBeGreaterThan(0);
  });
});

describe.sequential('a card pulled in the middle of its ingest', () => {
  let card: Card;
  let afterPull: { files: Map<string, string>; temps: string[] };
  let journalAfterPull: string;

  beforeAll(async () => {
    // Big enough that the ingest under TCG lasts well beyond the moment it is pulled.
    card = await makeCard('card2', 256, ['--count', '18', '--seed', '8', '--raw-size', '12MB']);
    await unplug('reader1');
    await box.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'card2', file: { driver: 'file', filename: card.image } });
    const ended = Number((await ok(`count '${CARD_UNIT_ENDED}'`)).trim());
    const journaledFiles = Number((await ok(`count 'file journaled'`)).trim());
    await plug('reader2', 'card2');
    // Pulled once a few of its files are verified, while most are still to come.
    await ok(`await 'file journaled' ${journaledFiles + 3} 300`, 6 * MINUTE);
    await unplug('reader2');
    await ok(`await '${CARD_UNIT_ENDED}' ${ended + 1} 180`, 4 * MINUTE);
    journalAfterPull = await ok(`journalctl -o cat --no-pager -u shuttle.service -u 'shuttle-card@*'`);
    afterPull = await destination();
    await writeFile(join(outDir, 'journal-pull.txt'), journalAfterPull);
  }, 15 * MINUTE);

  test('stops-the-card-unit-and-ends-the-job-without-done', () => {
    // Cancelled by the unmount, or failed where the vanished files were reached first: never done.
    expect(['cancelled', 'failed'], journalAfterPull.slice(-4000)).toContain(lastCardJobEnd(journalAfterPull));
    expect(journalAfterPull).not.toMatch(/shuttle-card sda1: powered off[\s\S]*shuttle-card sda1: powered off/);
  });

  test('leaves-only-whole-files-at-final-names', () => {
    for (const [hash, path] of afterPull.files) expect(sourceHashes.has(hash), `${path} matches no file of either card`).toBe(true);
    // The pull really came in the middle: some of the card's files are not there yet.
    const fromThisCard = [...afterPull.files.keys()].filter((h) => card.hashes.has(h));
    expect(fromThisCard.length).toBeLessThan(card.hashes.size);
  });

  test(
    're-inserted-it-is-finished-and-nothing-is-left-half-written',
    async () => {
      const ended = Number((await ok(`count '${CARD_UNIT_ENDED}'`)).trim());
      await plug('reader3', 'card2');
      await ok(`await '${CARD_UNIT_ENDED}' ${ended + 1} 480`, 9 * MINUTE);
      const journal = await ok(`journalctl -o cat --no-pager -u shuttle.service -u 'shuttle-card@*'`);
      await writeFile(join(outDir, 'journal-resume.txt'), journal);
      expect(lastCardJobEnd(journal), journal.slice(-4000)).toBe('done');
      const { files, temps } = await destination();
      for (const h of card.hashes) expect(files.has(h), `a file of the card (sha256 ${h}) is missing after the resume`).toBe(true);
      expect(temps).toEqual([]);
    },
    10 * MINUTE,
  );
});

describe.sequential('a power cut in the middle of an ingest', () => {
  let card: Card;
  /**
   * This card's copies the journal held verified right after the cut, with the path of the card's file
   * each is a copy of. Its source is the journal's newest (the cut came during its ingest); earlier cards
   * have files at the same paths with other bytes, and their copies are checked by the next test.
   */
  let journaled: Array<{ path: string; source: string }>;
  let afterCut: Map<string, string>;

  beforeAll(async () => {
    card = await makeCard('card3', 256, ['--count', '12', '--seed', '9', '--raw-size', '12MB']);
    await unplug('reader3');
    await box.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'card3', file: { driver: 'file', filename: card.image } });
    const journaledFiles = Number((await ok(`count 'file journaled'`)).trim());
    await plug('reader4', 'card3');
    // Cut while the card is half done: a few of its files are verified, the rest are not.
    await ok(`await 'file journaled' ${journaledFiles + 3} 300`, 6 * MINUTE);
    await box.powerCut();
    box = await bootBox({ image: ensureBoxImage(), artifactDir, outDir, reuseDisk: true });
    // Read the journal as it came back from the cut, with the daemon stopped so nothing changes it meanwhile.
    await ok(`systemctl stop shuttle.service; mkdir -p /out/journal-after-cut; cp /var/lib/shuttle/journal.sqlite* /out/journal-after-cut/`);
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(outDir, 'journal-after-cut', 'journal.sqlite'));
    try {
      journaled = db
        .prepare(
          `SELECT c.dest_path AS path, f.rel_path AS source FROM copies c JOIN files f ON f.id = c.file_id JOIN destinations d ON d.id = c.dest_id
           WHERE c.state = 'verified' AND d.path = '/srv/photos' AND f.source_id = (SELECT max(id) FROM sources)`,
        )
        .all() as typeof journaled;
    } finally {
      db.close();
    }
    afterCut = await destinationFiles();
  }, 20 * MINUTE);

  test('every-copy-the-journal-holds-verified-is-intact-after-the-cut', () => {
    expect(journaled.length).toBeGreaterThan(0);
    for (const c of journaled) {
      expect(card.byPath.has(c.source), `${c.source} is a file of the card`).toBe(true);
      expect(afterCut.get(c.path), `journal says ${c.path} is verified`).toBe(card.byPath.get(c.source));
    }
    // The cut really came in the middle: some of this card's files were not there yet.
    const hashesThere = new Set(afterCut.values());
    expect([...card.hashes].filter((h) => hashesThere.has(h)).length).toBeLessThan(card.hashes.size);
  });

  test('leaves-no-file-at-a-final-name-that-is-not-whole', () => {
    for (const [path, hash] of afterCut) {
      if (path.endsWith('.shuttle-tmp')) continue; // in-flight temps: the journal knows them and the next run removes them
      expect(sourceHashes.has(hash), `${path} matches no file of any card`).toBe(true);
    }
  });

  test(
    'the-journal-opens-consistent-and-the-ingest-completes-when-the-card-comes-back',
    async () => {
      const status = JSON.parse(await ok('systemctl start shuttle.service && runuser -u shuttle -- /usr/local/bin/shuttle status --json --state /var/lib/shuttle')) as {
        problems: string[];
      };
      expect(status.problems).toEqual([]);
      const ended = Number((await ok(`count '${CARD_UNIT_ENDED}'`)).trim());
      await box.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'card3', file: { driver: 'file', filename: card.image } });
      await plug('reader5', 'card3');
      await ok(`await '${CARD_UNIT_ENDED}' ${ended + 1} 480`, 9 * MINUTE);
      const journal = await ok(`journalctl -b -o cat --no-pager -u shuttle.service -u 'shuttle-card@*'`);
      await writeFile(join(outDir, 'journal-after-cut.txt'), journal);
      expect(lastCardJobEnd(journal), journal.slice(-4000)).toBe('done');
      const files = await destinationFiles();
      const hashes = new Set(files.values());
      for (const h of card.hashes) expect(hashes.has(h), `a file of the card (sha256 ${h}) is missing after the cut`).toBe(true);
      expect([...files.keys()].filter((p) => p.endsWith('.shuttle-tmp'))).toEqual([]);
      // Every file the journal holds verified is in a manifest and matches it.
      const verify = await guest('/usr/local/bin/shuttle verify /srv/photos --strict --json', 5 * MINUTE);
      expect(verify.rc, verify.output).toBe(0);
    },
    15 * MINUTE,
  );
});

describe.sequential('a camera plugged in over USB', () => {
  let shoot: { tree: string; hashes: Set<string> };
  let pluggedAt: number;
  let journal: string;
  const CAMERA_JOB_DONE = String.raw`"state":"done".*"origin":"device:usb"`;

  beforeAll(async () => {
    const tree = join(work, 'camera-tree');
    const sample = await runCli(['sample', tree, '--count', '5', '--seed', '11']);
    if (sample.code !== 0) throw new Error(`shuttle sample failed: ${sample.stderr}`);
    shoot = { tree, hashes: new Set([...(await listTree(tree)).values()].map((f) => f.sha256)) };
    for (const h of shoot.hashes) sourceHashes.add(h);
    const done = Number((await ok(`count '${CAMERA_JOB_DONE}'`)).trim());
    pluggedAt = Date.now() / 1000;
    // QEMU's usb-mtp: a class 6/1/1 still-image device serving the folder, as a camera in PTP mode does.
    await box.qmp.execute('device_add', { driver: 'usb-mtp', id: 'camera1', rootdir: tree, readonly: true, desc: 'Box Camera' });
    await ok(`await '${CAMERA_JOB_DONE}' ${done + 1} 420`, 8 * MINUTE);
    journal = await ok(`journalctl -b -o short-unix --no-pager -u shuttle.service`);
    await writeFile(join(outDir, 'journal-camera.txt'), journal);
  }, 10 * MINUTE);

  test('is-ingested-by-the-daemon-without-a-command-every-file-at-the-destination', async () => {
    expect(journal).toMatch(/"msg":"camera attached"/);
    const there = new Set((await destinationFiles()).values());
    for (const h of shoot.hashes) expect(there.has(h), `a file of the camera (sha256 ${h}) is missing at the destination`).toBe(true);
    const verify = await guest('/usr/local/bin/shuttle verify /srv/photos --strict --json', 5 * MINUTE);
    expect(verify.rc, verify.output).toBe(0);
  });

  test(
    'unplugged-it-is-reported-gone-and-plug-to-first-file-timings-are-recorded',
    async () => {
      await box.qmp.execute('device_del', { id: 'camera1' });
      await ok(`await '"msg":"camera detached"' 1 60`, 2 * MINUTE);
      const kernel = await ok('journalctl -b -o short-unix --no-pager -k');
      const after = (text: string, re: RegExp): number | undefined => {
        const line = text.split('\n').find((l) => re.test(l) && Number(l.split(' ')[0]) >= pluggedAt - 5);
        return line ? Number(line.split(' ')[0]) : undefined;
      };
      const timings = {
        pluggedAtHost: pluggedAt,
        usbEnumerated: after(kernel, /usb \S+: new .*USB device number/),
        cameraAttached: after(journal, /"msg":"camera attached"/),
        sessionOpen: after(journal, /"msg":"PTP session open"/),
        planReady: after(journal, /"msg":"plan ready"/),
        firstFileJournaled: after(journal, /"msg":"file journaled"/),
        jobDone: after(journal, new RegExp(CAMERA_JOB_DONE)),
      };
      await writeFile(join(REPO, '.tmp', 'box', 'last-camera-timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
      for (const [k, v] of Object.entries(timings)) expect(v, k).toBeDefined();
      expect(timings.cameraAttached!).toBeGreaterThanOrEqual(timings.usbEnumerated!);
    },
    3 * MINUTE,
  );
});

/**
 * The field station (issue 15) on the same box: two destinations, cards wiped once verified, "safe to
 * pull" as the crew sees it, and Eject from the API by the unprivileged daemon (issue 14). The card unit
 * gets a test drop-in that, when /run/box-hold exists, keeps the card mounted after its request ended
 * until /run/box-release appears: the moment between "job done" and the unmount is when the station
 * says "safe to pull", and the drop-in lets the test look at it before the release step goes on.
 */
const FIELD_DESTINATIONS = ['/srv/photos', '/srv/photos2'] as const;
const CARD_ANY_ENDED = String.raw`shuttle-card@sd[a-z]+1\.service: (Deactivated successfully|Failed with result|Skipped due to)`;
const CARD_JOB_DONE = String.raw`"state":"done".*"source":"/media/shuttle/sda1"`;
const API = 'http://127.0.0.1:8650/api/v1';
const JOB_ENDED = String.raw`"source":"/media/shuttle/sda1".*"msg":"job (done|cancelled|failed)"`;

let swift: SwiftServer | undefined;
let cloudPort: number;
let cloud: Server | undefined;

interface StationSeen {
  state: string;
  devices: Array<{ id: string; uri: string; state: string }>;
}

function imageListing(image: string): string[] {
  return sh('mdir', ['-/', '-b', '-i', `${image}@@${PARTITION_START_SECTOR * 512}`, '::/'])
    .split('\n')
    .filter((l) => l.startsWith('::/'));
}

/** Files (not folders) on a card image, as the host reads it with mtools: 'DCIM/100CANON/IMG_0001.JPG'. */
function filesOnImage(image: string): string[] {
  return imageListing(image)
    .filter((l) => !l.endsWith('/'))
    .map((l) => l.slice(3))
    .sort();
}

function foldersOnImage(image: string): string[] {
  return imageListing(image)
    .filter((l) => l.endsWith('/'))
    .map((l) => l.slice(3, -1))
    .sort();
}

interface CardParts {
  ingested: Map<string, string>;
  excluded: Map<string, string>;
  folders: string[];
}

/** The card's files as path → sha256, split by the field config's exclude (*.WAV), and its folders. */
async function cardParts(card: Card): Promise<CardParts> {
  const ingested = new Map<string, string>();
  const excluded = new Map<string, string>();
  for (const [path, f] of await listTree(card.tree)) (/\.wav$/i.test(path) ? excluded : ingested).set(path, f.sha256);
  const folders = sh('find', [card.tree, '-mindepth', '1', '-type', 'd', '-printf', '%P\n']).trim().split('\n').filter(Boolean).sort();
  return { ingested, excluded, folders };
}

/** sha256 of every file in each field destination (Shuttle's own folders and temps aside). */
async function fieldDestinations(): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const dir of FIELD_DESTINATIONS) {
    const list = await ok(
      `cd ${dir} && find . -type f ! -path './.shuttle/*' ! -path './ascmhl/*' ! -path './shuttle-reports/*' ! -name '*.shuttle-tmp' -exec sha256sum {} + </dev/null`,
    );
    out.set(
      dir,
      new Set(
        list
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split(/\s+/, 1)[0]!),
      ),
    );
  }
  return out;
}

async function expectAtBothDestinations(parts: CardParts): Promise<void> {
  for (const [dir, hashes] of await fieldDestinations()) {
    for (const [path, h] of parts.ingested) expect(hashes.has(h), `${path} is not at ${dir}`).toBe(true);
    for (const [path, h] of parts.excluded) expect(hashes.has(h), `${path} (excluded) is at ${dir}`).toBe(false);
  }
}

async function configureField(wipe: 'after-local' | 'after-cloud', withCloud: boolean): Promise<void> {
  const upload = withCloud ? `[upload]\ntarget = "s3://field/box"\nendpoint = "http://10.0.2.2:${cloudPort}"\nprovider = "swift"\nregion = "${swift!.region}"\n` : '';
  const config = `station = "box"
log_level = "debug"
[ingest]
exclude = ["*.WAV"]
[[destinations]]
path = "/srv/photos"
name = "primary"
[[destinations]]
path = "/srv/photos2"
name = "second"
[cards]
wipe = "${wipe}"
[api]
listen = "127.0.0.1:8650"
${upload}`;
  await writeFile(join(outDir, 'field-config.toml'), config);
  await ok(
    `install -m 0640 -g shuttle /out/field-config.toml /etc/shuttle/config.toml
systemctl restart shuttle.service || { journalctl -o cat --no-pager -n 60 -u shuttle.service; exit 1; }
until curl -sf ${API}/station > /dev/null; do sleep 0.2; done`,
    3 * MINUTE,
  );
}

/** The station as `shuttle status --json` and as GET /api/v1/station show it, asked one after the other. */
async function stationNow(): Promise<{ status: StationSeen; api: StationSeen }> {
  const out = await ok(`runuser -u shuttle -- /usr/local/bin/shuttle status --json --state /var/lib/shuttle; echo '@@'; curl -sf ${API}/station`);
  const [status, api] = out.split('@@\n') as [string, string];
  const daemon = (JSON.parse(status) as { daemon?: { station?: { state: string; devices: Array<{ id: string; state: string }> }; devices: Array<{ id: string; uri: string }> } })
    .daemon;
  if (!daemon?.station) throw new Error(`shuttle status --json shows no station:\n${status}`);
  // status names the devices' paths in its device list, and their states in the station view.
  const devices = daemon.station.devices.map((d) => ({ ...d, uri: daemon.devices.find((x) => x.id === d.id)?.uri ?? '' }));
  return { status: { state: daemon.station.state, devices }, api: JSON.parse(api) as StationSeen };
}

/** How many files the last wipe deleted, from the daemon's log. */
function lastWiped(journal: string): number | undefined {
  const m = [...journal.matchAll(/"wiped":(\d+)[^\n]*"msg":"verified files deleted from the source"/g)].pop();
  return m ? Number(m[1]) : undefined;
}

/** How the daemon's last card job ended, whichever sdX1 the card came as. */
function lastAnyCardJobEnd(journal: string): string | undefined {
  return [...journal.matchAll(/"source":"\/media\/shuttle\/sd[a-z]+1"[^\n]*"msg":"job (done|cancelled|failed)"/g)].pop()?.[1];
}

async function fullJournal(): Promise<string> {
  return ok(`journalctl -o cat --no-pager -u shuttle.service -u 'shuttle-card@*' -u 'shuttle-eject@*'`);
}

describe.sequential('a field station with two destinations', () => {
  beforeAll(async () => {
    for (const id of ['reader1', 'reader2', 'reader3', 'reader4', 'reader5']) await unplug(id).catch(() => undefined);
    swift = await startSwift();
    await swift.createBucket('field');
    [cloudPort] = (await freePorts(1)) as [number];
    await writeFile(join(outDir, 'aws-credentials'), `[default]\naws_access_key_id = ${swift.accessKeyId}\naws_secret_access_key = ${swift.secretAccessKey}\n`);
    await ok(
      String.raw`
mkdir -p /srv/photos /srv/photos2 && chown shuttle:shuttle /srv/photos /srv/photos2
install -m 0600 /out/aws-credentials /etc/shuttle/aws-credentials && rm /out/aws-credentials
mkdir -p /etc/systemd/system/shuttle-card@.service.d
cat > /etc/systemd/system/shuttle-card@.service.d/box-hold.conf <<'UNIT'
[Service]
ExecStopPost=
ExecStopPost=+/bin/sh -c 'if [ -e /run/box-hold ]; then until [ -e /run/box-release ]; do sleep 0.2; done; fi'
ExecStopPost=+/opt/shuttle/lib/shuttle-card release %I
TimeoutStopSec=300s
UNIT
systemctl daemon-reload`,
      MINUTE,
    );
  }, 5 * MINUTE);

  afterAll(async () => {
    await new Promise<void>((resolve) => (cloud ? cloud.close(() => resolve()) : resolve()));
    await swift?.stop();
  });

  describe.sequential('wipe = "after-local": a card verified at both destinations and read again', () => {
    let card: Card;
    let parts: CardParts;
    let held: { status: StationSeen; api: StationSeen; mount: string };
    let journal: string;

    beforeAll(async () => {
      await configureField('after-local', false);
      card = await makeCard('field1', 96, ['--count', '5', '--seed', '31'], { 'DCIM/VOICE001.WAV': 'a voice memo the config excludes\n' });
      parts = await cardParts(card);
      await box.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'field1', file: { driver: 'file', filename: card.image } });
      const ended = Number((await ok(`count '${CARD_ANY_ENDED}'`)).trim());
      const done = Number((await ok(`count '${CARD_JOB_DONE}'`)).trim());
      await ok('rm -f /run/box-release; touch /run/box-hold');
      await plug('field-reader1', 'field1');
      await ok(`await '${CARD_JOB_DONE}' ${done + 1} 480`, 9 * MINUTE);
      // The request has ended; the unit holds the card mounted until the release.
      held = { ...(await stationNow()), mount: await ok('findmnt -n -o OPTIONS /media/shuttle/sda1') };
      await ok(`rm -f /run/box-hold; touch /run/box-release; await '${CARD_ANY_ENDED}' ${ended + 1} 120`, 3 * MINUTE);
      journal = await fullJournal();
      await writeFile(join(outDir, 'journal-field-local.txt'), journal);
    }, 15 * MINUTE);

    test('is-mounted-read-write-because-a-wipe-policy-applies', () => {
      expect(held.mount.trim().split(',')).toContain('rw');
    });

    test('shows-safe-to-pull-through-status-and-the-api-once-wiped', () => {
      for (const seen of [held.status, held.api]) {
        expect(seen.state).toBe('safe-to-pull');
        expect(seen.devices.find((d) => d.uri === '/media/shuttle/sda1')?.state).toBe('safe-to-pull');
      }
    });

    test('wipes-exactly-the-ingested-files-and-keeps-folders-and-excluded-files', () => {
      expect(lastWiped(journal), journal.slice(-4000)).toBe(parts.ingested.size);
      expect(filesOnImage(card.image)).toEqual([...parts.excluded.keys()].sort());
      expect(foldersOnImage(card.image)).toEqual(parts.folders);
    });

    test('every-wiped-file-is-at-both-destinations-and-the-excluded-at-neither', async () => {
      await expectAtBothDestinations(parts);
    });

    test('is-unmounted-and-powered-off-after-safe-to-pull', async () => {
      const after = journal.slice(journal.lastIndexOf('verified files deleted from the source'));
      expect(after).toContain('unmounted /media/shuttle/sda1');
      expect(after).toMatch(/shuttle-card sda1: powered off \S+ \(\/dev\/sda\)/);
      expect((await ok('ls /sys/block')).split(/\s+/)).not.toContain('sda');
    });
  });

  describe.sequential('wipe = "after-cloud" with the cloud down, then up', () => {
    let card: Card;
    let parts: CardParts;
    let whileDown: { station: { status: StationSeen; api: StationSeen }; files: number; refused: number };
    let journal: string;

    beforeAll(async () => {
      await unplug('field-reader1').catch(() => undefined);
      await configureField('after-cloud', true);
      card = await makeCard('field2', 96, ['--count', '4', '--seed', '32'], { 'DCIM/VOICE002.WAV': 'another voice memo\n' });
      parts = await cardParts(card);
      await box.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'field2', file: { driver: 'file', filename: card.image } });
      const ended = Number((await ok(`count '${CARD_ANY_ENDED}'`)).trim());
      const waiting = Number((await ok(`count 'waiting for the cloud copies to be verified before wiping'`)).trim());
      const refused = Number((await ok(`count '"msg":"upload deferred"'`)).trim());
      await plug('field-reader2', 'field2');
      // Down: both destinations verified, the job waits for the cloud, and the uploader has really tried
      // and put the upload off (nothing listens at 10.0.2.2 on that port yet).
      await ok(`await 'waiting for the cloud copies to be verified before wiping' ${waiting + 1} 480`, 9 * MINUTE);
      await ok(`await '"msg":"upload deferred"' ${refused + 1} 180`, 4 * MINUTE);
      whileDown = {
        station: await stationNow(),
        files: Number((await ok('find /media/shuttle/sda1 -type f | wc -l')).trim()),
        refused: Number((await ok(`count '"msg":"upload deferred"'`)).trim()) - refused,
      };
      // Up: a forwarder on the port the daemon was given, to the real Swift.
      const upstream = swift!.port;
      cloud = createServer((c) => {
        const u = connect(upstream, '127.0.0.1');
        c.pipe(u).pipe(c);
        c.on('error', () => u.destroy());
        u.on('error', () => c.destroy());
      });
      await new Promise<void>((resolve, reject) => cloud!.once('error', reject).listen(cloudPort, '127.0.0.1', () => resolve()));
      await ok(`await '${CARD_ANY_ENDED}' ${ended + 1} 900`, 16 * MINUTE);
      journal = await fullJournal();
      await writeFile(join(outDir, 'journal-field-cloud.txt'), journal);
    }, 35 * MINUTE);

    test('while-the-cloud-is-down-nothing-is-wiped-and-the-station-is-not-safe-to-pull', () => {
      expect(whileDown.refused).toBeGreaterThan(0);
      expect(whileDown.files).toBe(parts.ingested.size + parts.excluded.size);
      for (const seen of [whileDown.station.status, whileDown.station.api]) {
        expect(seen.state).not.toBe('safe-to-pull');
        expect(seen.devices.find((d) => d.uri === '/media/shuttle/sda1')?.state).not.toBe('safe-to-pull');
      }
    });

    test('once-the-uploads-verify-the-ingested-files-are-wiped-and-the-card-powered-off', async () => {
      expect(lastWiped(journal), journal.slice(-4000)).toBe(parts.ingested.size);
      expect(filesOnImage(card.image)).toEqual([...parts.excluded.keys()].sort());
      expect(journal.slice(journal.lastIndexOf('verified files deleted from the source'))).toMatch(/shuttle-card sda1: powered off/);
      await expectAtBothDestinations(parts);
    });

    test('every-wiped-file-is-in-the-bucket-with-its-md5', async () => {
      const admin = swift!.adminClient();
      try {
        const listed = await admin.send(new ListObjectsV2Command({ Bucket: 'field', Prefix: 'box/' }));
        const etags = new Set((listed.Contents ?? []).map((o) => (o.ETag ?? '').replaceAll('"', '')));
        for (const path of parts.ingested.keys()) {
          const md5 = createHash('md5')
            .update(await readFile(join(card.tree, path)))
            .digest('hex');
          expect(etags.has(md5), `${path} (md5 ${md5}) is not in the bucket`).toBe(true);
        }
      } finally {
        admin.destroy();
      }
    });
  });

  describe.sequential('a card pulled in the middle of its wipe, then re-inserted', () => {
    let card: Card;
    let parts: CardParts;
    let onCardAtPull: number;
    let journalAfterPull: string;
    let journal: string;

    beforeAll(async () => {
      await unplug('field-reader2').catch(() => undefined);
      await configureField('after-local', false);
      card = await makeCard('field3', 128, ['--count', '25', '--seed', '33']);
      parts = await cardParts(card);
      await box.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'field3', file: { driver: 'file', filename: card.image } });
      const ended = Number((await ok(`count '${CARD_ANY_ENDED}'`)).trim());
      const jobsEnded = Number((await ok(`count '${JOB_ENDED}'`)).trim());
      // At the card's first deletion the daemon is stopped where it is (SIGSTOP): the pull then lands
      // between two deletions, and the test sees how many went.
      await ok(String.raw`rm -f /run/box-stopped
nohup sh -c 'until mountpoint -q /media/shuttle/sda1; do sleep 0.2; done
inotifywait -q -r -e delete /media/shuttle/sda1
kill -STOP $(systemctl show -p MainPID --value shuttle.service)
touch /run/box-stopped' > /out/inotify.log 2>&1 &`);
      await plug('field-reader3', 'field3');
      await ok('until [ -e /run/box-stopped ]; do sleep 0.2; done', 9 * MINUTE);
      onCardAtPull = Number((await ok('find /media/shuttle/sda1 -type f | wc -l')).trim());
      await unplug('field-reader3');
      // The watchdog (30 s) must not see the stopped daemon: resume it as soon as the card is gone.
      await ok(`until [ ! -e /sys/block/sda ]; do sleep 0.2; done; kill -CONT $(systemctl show -p MainPID --value shuttle.service)`, MINUTE);
      await ok(`await '${CARD_ANY_ENDED}' ${ended + 1} 180; await '${JOB_ENDED}' ${jobsEnded + 1} 120`, 6 * MINUTE);
      journalAfterPull = await fullJournal();
      await writeFile(join(outDir, 'journal-field-pull.txt'), journalAfterPull);
      const ended2 = Number((await ok(`count '${CARD_ANY_ENDED}'`)).trim());
      await plug('field-reader4', 'field3');
      await ok(`await '${CARD_ANY_ENDED}' ${ended2 + 1} 480`, 9 * MINUTE);
      journal = await fullJournal();
      await writeFile(join(outDir, 'journal-field-resume.txt'), journal);
    }, 30 * MINUTE);

    test('the-pull-came-after-some-deletions-and-before-the-last', () => {
      const total = parts.ingested.size + parts.excluded.size;
      expect(onCardAtPull).toBeLessThan(total);
      expect(onCardAtPull).toBeGreaterThan(parts.excluded.size);
    });

    test('re-inserted-the-rest-is-wiped-and-nothing-is-lost', async () => {
      expect(lastAnyCardJobEnd(journal), journal.slice(-4000)).toBe('done');
      expect(filesOnImage(card.image)).toEqual([...parts.excluded.keys()].sort());
      await expectAtBothDestinations(parts);
      const temps = await ok(`find ${FIELD_DESTINATIONS.join(' ')} -name '*.shuttle-tmp'`);
      expect(temps.trim()).toBe('');
    });
  });

  describe.sequential('eject from the API under the hardened unit', () => {
    let card: Card;
    let name: string;
    let response: { status: number; body: { unmounted?: boolean; poweredOff?: boolean; note?: string } };
    let journal: string;

    beforeAll(async () => {
      await unplug('field-reader4').catch(() => undefined);
      await configureField('after-local', false);
      // A card that no card unit takes (as one mounted by hand): the daemon's mount watcher ingests it
      // and it stays mounted afterwards, for the Eject button.
      await ok(String.raw`cat > /etc/udev/rules.d/65-box-eject.rules <<'RULES'
SUBSYSTEM=="block", ENV{ID_SERIAL_SHORT}=="EJECTME", ENV{SHUTTLE_IGNORE}="1"
RULES
udevadm control --reload`);
      card = await makeCard('field4', 96, ['--count', '2', '--seed', '34']);
      await box.qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'field4', file: { driver: 'file', filename: card.image } });
      await box.qmp.execute('device_add', { driver: 'usb-storage', id: 'field-reader5', drive: 'field4', removable: true, serial: 'EJECTME' });
      name = (
        await ok(String.raw`end=$(( $(date +%s) + 120 ))
until p=$(ls /dev/disk/by-id/ | grep -m1 'EJECTME.*-part1$'); do [ "$(date +%s)" -ge "$end" ] && exit 1; sleep 0.2; done
basename "$(readlink -f /dev/disk/by-id/$p)"`)
      ).trim();
      const done = `"state":"done".*"source":"/media/shuttle/${name}"`;
      const before = Number((await ok(`count '${done}'`)).trim());
      await ok(`/opt/shuttle/lib/shuttle-card mount ${name} && await '${done}' ${before + 1} 300`, 6 * MINUTE);
      const station = JSON.parse(await ok(`curl -sf ${API}/station`)) as StationSeen;
      const device = station.devices.find((d) => d.uri === `/media/shuttle/${name}`);
      if (!device) throw new Error(`the daemon shows no device for /media/shuttle/${name}: ${JSON.stringify(station)}`);
      const out = await ok(`curl -s -X POST -w '\n%{http_code}' ${API}/devices/${encodeURIComponent(device.id)}/eject`, 3 * MINUTE);
      const lines = out.trim().split('\n');
      response = { status: Number(lines.pop()), body: JSON.parse(lines.join('\n')) as typeof response.body };
      journal = await fullJournal();
      await writeFile(join(outDir, 'journal-field-eject.txt'), journal);
    }, 12 * MINUTE);

    afterAll(async () => {
      await ok('rm -f /etc/udev/rules.d/65-box-eject.rules; udevadm control --reload').catch(() => undefined);
    });

    test('unmounts-and-powers-the-card-off-through-the-eject-unit', async () => {
      expect(response, journal.slice(-3000)).toMatchObject({ status: 200, body: { unmounted: true, poweredOff: true } });
      expect((await guest(`findmnt /media/shuttle/${name}`)).rc).not.toBe(0);
      expect((await ok('ls /sys/block')).split(/\s+/)).not.toContain(name.replace(/\d+$/, ''));
      expect(journal).toContain(`shuttle-card ${name}: unmounted /media/shuttle/${name}`);
      expect(journal).toMatch(new RegExp(`shuttle-card ${name}: powered off`));
    });

    test('the-daemon-still-runs-as-shuttle-without-capabilities', async () => {
      const out = await ok(`pid=$(systemctl show -p MainPID --value shuttle.service); ps -o user= -p "$pid"; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/$pid/status`);
      const [user, ...caps] = out.trim().split('\n');
      expect(user!.trim()).toBe('shuttle');
      expect(caps).toHaveLength(5);
      for (const c of caps) expect(c, c).toMatch(/:\s+0+$/);
    });
  });
});
