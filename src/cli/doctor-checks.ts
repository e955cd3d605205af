import { execFile } from 'node:child_process';
import { constants as fsConstants, type Stats } from 'node:fs';
import { access, open, readFile, readdir, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Config } from '../config/index.js';
import { ControlClient } from '../daemon/control.js';
import { clientSocketPaths } from '../daemon/socket-path.js';
import { errnoCode, isShuttleError } from '../errors.js';
import { parseS3Url } from '../upload/keys.js';

/**
 * What keeps Shuttle from working on this machine, one check at a time. Each check reads the system
 * (below `root`, so that tests can lay out a system in a temp dir) and answers ok, warn or fail with what
 * to do about it. Checks judge from the service's point of view: the `shuttle` user, the installed units.
 */

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  /** Stable name: `units`, `camera:001/004`, `destination:/srv/photos`, … */
  id: string;
  status: CheckStatus;
  /** What was found. */
  detail: string;
  /** What to do, for warn and fail. */
  fix?: string;
}

export interface DoctorOptions {
  config: Config;
  /** The state dir the service uses (see serviceStateDir). */
  stateDir: string;
  /** Where the system (/etc, /dev, /run, /proc) is: '/' except in tests. The state dir and destinations are real paths. */
  root?: string;
  /** This program's tree (dist/..): holds the units and rules of this version. */
  programRoot: string;
  version: string;
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
  signal?: AbortSignal;
  /** Per network check (daemon, S3). */
  timeoutMs?: number;
}

export const SERVICE_USER = 'shuttle';
export const UNIT_NAMES = ['shuttle.service', 'shuttle-card@.service'] as const;
export const RULE_NAMES = ['70-shuttle-cameras.rules', '70-shuttle-cards.rules'] as const;
const UNIT_DIRS = ['/etc/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
const RULE_DIRS = ['/etc/udev/rules.d', '/usr/local/lib/udev/rules.d', '/usr/lib/udev/rules.d', '/lib/udev/rules.d'];
/** The dashboard's Eject: the unit the daemon starts, and the polkit rule that lets it. */
export const EJECT_UNIT = 'shuttle-eject@.service';
export const POLKIT_RULE = '50-shuttle.rules';
const POLKIT_DIRS = ['/etc/polkit-1/rules.d', '/usr/share/polkit-1/rules.d'];
/** Where distributions put polkitd, and pkaction, which comes with it. */
const POLKITD_FILES = ['/usr/lib/polkit-1/polkitd', '/usr/libexec/polkitd', '/usr/libexec/polkit-1/polkitd', '/usr/bin/pkaction'];
/** StateDirectory=shuttle of shuttle.service. */
export const SERVICE_STATE_DIR = '/var/lib/shuttle';
/** The file shuttle.service loads as a credential; the service does not start without it. */
export const SERVICE_CREDENTIALS_FILE = '/etc/shuttle/aws-credentials';
/** Below this, a destination gets a warning even when it has no min_free_bytes. */
const LOW_SPACE_BYTES = 10 * 1024 ** 3;
/** S3 rejects signatures more than 15 minutes off; warn well before. */
const MAX_CLOCK_SKEW_MS = 5 * 60_000;

const ok = (id: string, detail: string): CheckResult => ({ id, status: 'ok', detail });
const warn = (id: string, detail: string, fix: string): CheckResult => ({ id, status: 'warn', detail, fix });
const fail = (id: string, detail: string, fix: string): CheckResult => ({ id, status: 'fail', detail, fix });

// ---- the system, below root ----

class System {
  readonly root: string;
  constructor(root: string) {
    this.root = root;
  }
  path(p: string): string {
    return this.root === '/' ? p : join(this.root, p);
  }
  async text(p: string): Promise<string | undefined> {
    try {
      return await readFile(this.path(p), 'utf8');
    } catch {
      return undefined;
    }
  }
  /** The first of `dirs` holding `name`, as a system path. */
  async find(dirs: readonly string[], name: string): Promise<string | undefined> {
    for (const d of dirs) {
      const p = join(d, name);
      if ((await this.text(p)) !== undefined) return p;
    }
    return undefined;
  }
}

/** A user as file permissions see it. */
export interface Principal {
  name: string;
  uid: number;
  gids: number[];
}

async function serviceUser(sys: System): Promise<Principal | undefined> {
  const passwd = (await sys.text('/etc/passwd')) ?? '';
  const line = passwd.split('\n').find((l) => l.startsWith(`${SERVICE_USER}:`));
  if (line === undefined) return undefined;
  const [, , uid, gid] = line.split(':');
  const gids = new Set([Number(gid)]);
  for (const g of ((await sys.text('/etc/group')) ?? '').split('\n')) {
    const [, , id, members = ''] = g.split(':');
    if (members.split(',').includes(SERVICE_USER)) gids.add(Number(id));
  }
  return { name: SERVICE_USER, uid: Number(uid), gids: [...gids] };
}

function exists(path: string): Promise<boolean> {
  return access(path, fsConstants.F_OK).then(
    () => true,
    () => false,
  );
}

function currentUser(): Principal {
  return { name: 'this user', uid: process.getuid?.() ?? -1, gids: process.getgroups?.() ?? [] };
}

/** Whether the owner, group and mode bits let `who` do each of `want` (`r`, `w`, `x`; ACLs aside; root may do anything). */
export function permits(st: Pick<Stats, 'uid' | 'gid' | 'mode'>, who: Principal, want: string): boolean {
  if (who.uid === 0) return true;
  const bits = (want.includes('r') ? 4 : 0) | (want.includes('w') ? 2 : 0) | (want.includes('x') ? 1 : 0);
  const shift = st.uid === who.uid ? 6 : who.gids.includes(st.gid) ? 3 : 0;
  return ((st.mode >> shift) & bits) === bits;
}

function describeOwner(st: Pick<Stats, 'uid' | 'gid' | 'mode'>): string {
  return `uid ${st.uid}, gid ${st.gid}, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}`;
}

/** Every directory above `path` lets `who` through. */
async function reachable(path: string, who: Principal): Promise<boolean> {
  for (let d = dirname(path); ; d = dirname(d)) {
    try {
      if (!permits(await stat(d), who, 'x')) return false;
    } catch {
      return false;
    }
    if (dirname(d) === d) return true;
  }
}

// ---- units, rules, service user ----

async function installedCopies(sys: System, dirs: readonly string[], names: readonly string[], reference: (name: string) => Promise<string | undefined>) {
  const found: Array<{ name: string; path?: string; current: boolean }> = [];
  for (const name of names) {
    const path = await sys.find(dirs, name);
    const text = path === undefined ? undefined : await sys.text(path);
    const ref = await reference(name);
    found.push(path === undefined ? { name, current: false } : { name, path, current: ref === undefined || ref === text });
  }
  return found;
}

/**
 * A unit as scripts/install.sh writes it for another prefix than /opt/shuttle: a prefix with spaces is
 * quoted on Exec lines (systemd splits commands there) and has its spaces as %%20 in Documentation URLs.
 */
export function unitWithPrefix(text: string, prefix: string): string {
  const quote = prefix.includes(' ');
  return text
    .split('\n')
    .map((line) => {
      if (quote && /^Exec[A-Za-z]*=/.test(line)) return line.replace(/\/opt\/shuttle\/(\S*)/g, (_m, rest: string) => `"${prefix}/${rest}"`);
      const p = line.startsWith('Documentation=') ? prefix.replaceAll(' ', '%%20') : prefix;
      return line.replaceAll('/opt/shuttle/', `${p}/`);
    })
    .join('\n');
}

/** This version's copy of a file the installer installs, as the installer writes it. */
function shippedCopy(opts: DoctorOptions, folder: 'systemd' | 'udev' | 'polkit'): (name: string) => Promise<string | undefined> {
  return async (name) => {
    const text = await readFile(join(opts.programRoot, folder, name), 'utf8').catch(() => undefined);
    // The installer writes its prefix into the units; this tree is that prefix when it is installed.
    return folder === 'systemd' && text !== undefined ? unitWithPrefix(text, opts.programRoot.replace(/\/$/, '')) : text;
  };
}

const INSTALL_FIX = 'install Shuttle with its installer: sudo ./scripts/install.sh (from the unpacked release)';

async function checkInstalled(sys: System, opts: DoctorOptions, what: 'units' | 'rules'): Promise<CheckResult> {
  const units = what === 'units';
  const names = units ? UNIT_NAMES : RULE_NAMES;
  const copies = await installedCopies(sys, units ? UNIT_DIRS : RULE_DIRS, names, shippedCopy(opts, units ? 'systemd' : 'udev'));
  const missing = copies.filter((c) => c.path === undefined).map((c) => c.name);
  const install = INSTALL_FIX;
  if (missing.length === names.length) return fail(what, `no Shuttle ${what} installed (looked in ${(units ? UNIT_DIRS : RULE_DIRS).join(', ')})`, install);
  if (missing.length > 0) return fail(what, `missing: ${missing.join(', ')}`, install);
  const stale = copies.filter((c) => !c.current).map((c) => c.path!);
  const where = copies.map((c) => c.path!).join(', ');
  if (stale.length > 0)
    return warn(what, `installed, but not this version's (${opts.version}): ${stale.join(', ')}`, `reinstall this version: sudo ${opts.programRoot}/scripts/install.sh`);
  return ok(what, `installed: ${where}`);
}

/**
 * The dashboard's Eject: the daemon, unprivileged, starts shuttle-eject@NAME.service, which polkit allows
 * through the installer's rule only. Without any of the three the daemon runs, but Eject is refused.
 */
async function checkEject(sys: System, opts: DoctorOptions): Promise<CheckResult> {
  const [unit] = await installedCopies(sys, UNIT_DIRS, [EJECT_UNIT], shippedCopy(opts, 'systemd'));
  const [rule] = await installedCopies(sys, POLKIT_DIRS, [POLKIT_RULE], shippedCopy(opts, 'polkit'));
  const copies = [unit!, rule!];
  const missing = copies.filter((c) => c.path === undefined).map((c) => c.name);
  if (missing.length > 0) {
    const looked = [...(unit!.path === undefined ? UNIT_DIRS : []), ...(rule!.path === undefined ? POLKIT_DIRS : [])].join(', ');
    return warn('eject', `missing: ${missing.join(', ')} (looked in ${looked}): the dashboard's Eject cannot unmount and power off a card`, INSTALL_FIX);
  }
  const stale = copies.filter((c) => !c.current).map((c) => c.path!);
  if (stale.length > 0)
    return warn('eject', `installed, but not this version's (${opts.version}): ${stale.join(', ')}`, `reinstall this version: sudo ${opts.programRoot}/scripts/install.sh`);
  const where = `${unit!.path}, ${rule!.path}`;
  let polkitd = false;
  for (const f of POLKITD_FILES) polkitd ||= await exists(sys.path(f));
  if (!polkitd) return warn('eject', `${where} installed, but polkitd is not: nothing lets the daemon start the eject unit, so Eject is refused`, 'sudo apt-get install polkitd');
  return ok('eject', `installed: ${where}`);
}

function checkServiceUser(user: Principal | undefined): CheckResult {
  if (user === undefined) return fail('service-user', `no user "${SERVICE_USER}" in /etc/passwd`, 'the installer creates it: sudo ./scripts/install.sh');
  return ok('service-user', `user ${SERVICE_USER} (uid ${user.uid}, groups ${user.gids.join(',')})`);
}

// ---- daemon ----

async function checkDaemon(opts: DoctorOptions): Promise<CheckResult> {
  const env = opts.env ?? process.env;
  const paths = clientSocketPaths(opts.config.daemon.controlSocket, env);
  let client: ControlClient;
  try {
    client = await ControlClient.connect(paths, { timeoutMs: opts.timeoutMs ?? 3_000, signal: opts.signal });
  } catch (err) {
    const errno = isShuttleError(err) ? String(err.context['errno'] ?? '') : '';
    if (errno === 'EACCES' || errno === 'EPERM') {
      return warn('daemon', `not allowed to ask the daemon at ${paths.join(', ')}`, `run doctor as root or as a member of group ${SERVICE_USER}`);
    }
    return warn('daemon', `no daemon answers (${paths.join(', ')})`, 'start it: sudo systemctl enable --now shuttle (logs: journalctl -u shuttle)');
  }
  try {
    const pong = (await client.request('ping', {}, { signal: AbortSignal.any([AbortSignal.timeout(opts.timeoutMs ?? 3_000), ...(opts.signal ? [opts.signal] : [])]) })) as {
      version?: string;
      pid?: number;
    };
    if (pong.version !== undefined && pong.version !== opts.version) {
      return warn('daemon', `running (pid ${pong.pid}) version ${pong.version}, but this is ${opts.version}`, 'restart it after an upgrade: sudo systemctl restart shuttle');
    }
    return ok('daemon', `running (pid ${pong.pid}, version ${pong.version}) at ${client.path}`);
  } catch (err) {
    return fail('daemon', `the daemon at ${client.path} does not answer: ${(err as Error).message}`, 'see journalctl -u shuttle; restart it: sudo systemctl restart shuttle');
  } finally {
    client.close();
  }
}

// ---- cameras ----

export interface UsbDescriptorSummary {
  vendorId: number;
  productId: number;
  /** class/subclass/protocol of every interface of every configuration. */
  interfaces: Array<[number, number, number]>;
}

/** The device and configuration descriptors a usbfs node (/dev/bus/usb/BBB/DDD) reads back as. */
export function parseUsbDescriptors(buf: Buffer): UsbDescriptorSummary | undefined {
  if (buf.length < 18 || buf[1] !== 1) return undefined;
  const summary: UsbDescriptorSummary = { vendorId: buf.readUInt16LE(8), productId: buf.readUInt16LE(10), interfaces: [] };
  for (let at = buf[0]!; at + 2 <= buf.length; ) {
    const len = buf[at]!;
    if (len < 2) break;
    if (buf[at + 1] === 4 && len >= 9 && at + 9 <= buf.length) summary.interfaces.push([buf[at + 5]!, buf[at + 6]!, buf[at + 7]!]);
    at += len;
  }
  return summary;
}

/** udev's properties of a device, from its database entry (E:KEY=value lines). */
async function udevProperties(sys: System, major: number, minor: number): Promise<Map<string, string>> {
  const props = new Map<string, string>();
  for (const line of ((await sys.text(`/run/udev/data/c${major}:${minor}`)) ?? '').split('\n')) {
    if (!line.startsWith('E:')) continue;
    const eq = line.indexOf('=');
    if (eq > 2) props.set(line.slice(2, eq), line.slice(eq + 1));
  }
  return props;
}

interface UsbNode {
  node: string;
  bus: number;
  dev: number;
  ids: string;
  stat: Stats;
  props: Map<string, string>;
  stillImage: boolean;
}

const USB_DEVICE_MAJOR = 189;
const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

async function usbNodes(sys: System): Promise<UsbNode[]> {
  const nodes: UsbNode[] = [];
  const base = '/dev/bus/usb';
  const buses = await readdir(sys.path(base)).catch(() => [] as string[]);
  for (const bus of buses.sort()) {
    for (const dev of (await readdir(sys.path(join(base, bus))).catch(() => [] as string[])).sort()) {
      const node = join(base, bus, dev);
      let buf: Buffer;
      let st: Stats;
      try {
        st = await stat(sys.path(node));
        const fh = await open(sys.path(node), 'r');
        try {
          const { bytesRead, buffer } = await fh.read(Buffer.alloc(4096), 0, 4096, 0);
          buf = buffer.subarray(0, bytesRead);
        } finally {
          await fh.close();
        }
      } catch {
        continue;
      }
      const d = parseUsbDescriptors(buf);
      if (d === undefined) continue;
      const b = Number(bus);
      const n = Number(dev);
      const props = await udevProperties(sys, USB_DEVICE_MAJOR, (b - 1) * 128 + (n - 1));
      const stillImage = d.interfaces.some(([c, s, p]) => c === 6 && s === 1 && p === 1);
      nodes.push({ node, bus: b, dev: n, ids: `${hex4(d.vendorId)}:${hex4(d.productId)}`, stat: st, props, stillImage });
    }
  }
  return nodes;
}

function isCamera(n: UsbNode): boolean {
  return n.stillImage || n.props.get('SHUTTLE_CAMERA') === '1' || n.props.get('ID_MTP_DEVICE') === '1' || n.props.get('ID_GPHOTO2') === '1';
}

async function checkCameras(sys: System, user: Principal): Promise<CheckResult[]> {
  const cameras = (await usbNodes(sys)).filter(isCamera);
  if (cameras.length === 0) return [ok('cameras', 'no camera attached (plug one in and run doctor again to check its permissions)')];
  return cameras.map((c) => {
    const id = `camera:${c.node.replace('/dev/bus/usb/', '')}`;
    const name = `${c.ids}${c.props.get('ID_MODEL') ? ` ${c.props.get('ID_VENDOR') ?? ''} ${c.props.get('ID_MODEL')}`.replace(/_/g, ' ') : ''} at ${c.node}`;
    if (!permits(c.stat, user, 'rw')) {
      const rulesApplied = c.props.get('SHUTTLE_CAMERA') === '1';
      return fail(
        id,
        `${name}: ${user.name} cannot open it (${describeOwner(c.stat)})`,
        rulesApplied
          ? `the rules matched but the node is not writable by group ${SERVICE_USER}: another rule after 70-shuttle-cameras.rules changes it (udevadm test ${c.node})`
          : `install the udev rules (sudo ./scripts/install.sh), then re-plug the camera or run: sudo udevadm trigger --action=change --subsystem-match=usb`,
      );
    }
    if (c.props.size > 0 && c.props.get('SHUTTLE_CAMERA') !== '1') {
      return warn(
        id,
        `${name}: usable, but Shuttle's udev rules did not match it`,
        'if it is a camera Shuttle should ingest, add its USB id to the PTP quirks table and regenerate the rules',
      );
    }
    return ok(id, `${name}: ${user.name} can open it`);
  });
}

// ---- desktop services that grab cameras ----

interface Grabber {
  match: RegExp;
  what: string;
  fix: string;
}

/** How to stop GNOME's gvfs from opening cameras (also what `shuttle tether` says when gvfs holds one). */
export const GVFS_FIX =
  'as each desktop user: systemctl --user mask --now gvfs-gphoto2-volume-monitor.service gvfs-mtp-volume-monitor.service; ' +
  'or for everyone: sudo chmod -x /usr/libexec/gvfs-gphoto2-volume-monitor /usr/libexec/gvfsd-gphoto2 /usr/libexec/gvfs-mtp-volume-monitor /usr/libexec/gvfsd-mtp; ' +
  'on a box without a desktop: sudo apt-get remove gvfs-backends';
const KDE_FIX =
  'in KDE System Settings › Removable Storage, turn off automatic mounting and actions for cameras and phones, or close the Device Notifier prompt before plugging in; kio_mtp/kio_camera workers exit when their Dolphin windows close';

const GRABBERS: readonly Grabber[] = [
  { match: /(^|\/)gvfs-gphoto2-volume-monitor$/, what: 'GNOME gvfs gphoto2 volume monitor', fix: GVFS_FIX },
  { match: /(^|\/)gvfsd-gphoto2$/, what: 'GNOME gvfs gphoto2 backend', fix: GVFS_FIX },
  { match: /(^|\/)gvfs-mtp-volume-monitor$/, what: 'GNOME gvfs MTP volume monitor', fix: GVFS_FIX },
  { match: /(^|\/)gvfsd-mtp$/, what: 'GNOME gvfs MTP backend', fix: GVFS_FIX },
  { match: /(^|\/)(kio_mtp|kio_camera)(\.so)?$|kioworker.*(kio_mtp|kio_camera)|(^|\/)kiod[56]$/, what: 'KDE Solid/KIO device worker', fix: KDE_FIX },
];

interface Process {
  pid: number;
  argv: string[];
}

/** The processes running, with their command lines (kernel threads, which have none, left out). */
async function processes(sys: System): Promise<Process[]> {
  const out: Process[] = [];
  for (const entry of await readdir(sys.path('/proc')).catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await sys.text(`/proc/${entry}/cmdline`);
    if (cmdline) out.push({ pid: Number(entry), argv: cmdline.split('\0').filter(Boolean) });
  }
  return out;
}

function checkDesktopGrabbers(procs: readonly Process[]): CheckResult {
  const seen = new Map<string, { pids: number[]; fix: string }>();
  for (const { pid, argv } of procs) {
    const exe = argv[0] ?? '';
    const g = GRABBERS.find((x) => x.match.test(exe) || (x.what.startsWith('KDE') && argv.some((a) => /kio_(mtp|camera)/.test(a))));
    if (g === undefined) continue;
    const s = seen.get(g.what) ?? { pids: [], fix: g.fix };
    s.pids.push(pid);
    seen.set(g.what, s);
  }
  if (seen.size === 0) return ok('desktop', 'no GNOME gvfs or KDE Solid process that grabs cameras is running');
  const found = [...seen].map(([what, s]) => `${what} (pid ${s.pids.join(', ')})`).join('; ');
  const fixes = [...new Set([...seen.values()].map((s) => s.fix))].join(' — ');
  return warn('desktop', `${found}: it opens cameras as they are plugged in, and then Shuttle cannot claim them ("device busy")`, fixes);
}

// ---- udev, CPU ----

/** udevd runs the rules that start an ingest when a card or camera is plugged in; without it nothing starts. */
function checkUdevd(procs: readonly Process[]): CheckResult {
  const pids = procs.filter((p) => /(^|\/)(systemd-)?udevd$/.test(p.argv[0] ?? '')).map((p) => p.pid);
  if (pids.length > 0) return ok('udevd', `systemd-udevd is running (pid ${pids.join(', ')})`);
  return fail(
    'udevd',
    "systemd-udevd is not running: Shuttle's udev rules are what start an ingest when a card or camera is plugged in, and a camera plugged in after Shuttle started is never seen",
    'sudo systemctl enable --now systemd-udevd; where none can run (a container), start each ingest by hand: shuttle ingest SOURCE',
  );
}

/**
 * sharp's prebuilt libvips for x86-64 needs SSE4.2 (QEMU's default CPU lacks it). Shuttle does not load
 * it on such a CPU (src/ingest/preview.ts), so with [api] listen set (the dashboard's thumbnails) or
 * previews made, the daemon runs but makes no previews.
 */
async function checkCpu(sys: System, opts: DoctorOptions): Promise<CheckResult> {
  const cpuinfo = await sys.text('/proc/cpuinfo');
  if (cpuinfo === undefined) return ok('cpu', 'no /proc/cpuinfo to read; not checked');
  // x86 lists "flags"; other architectures (ARM's "Features") have nothing sharp asks for here.
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.trim().split(/\s+/);
  if (flags === undefined) return ok('cpu', 'not an x86 CPU: no SSE4.2 to check for sharp');
  if (flags.includes('sse4_2')) return ok('cpu', 'x86-64 with SSE4.2, which sharp (previews, thumbnails) needs');
  const { api, previews, tether } = opts.config;
  const configured =
    api.listen !== undefined
      ? '[api] listen set'
      : previews.make === 'always'
        ? '[previews] make = "always"'
        : previews.make === 'auto' && tether.cameras.length > 0
          ? '[tether] cameras set'
          : undefined;
  const lacks = "this CPU lacks SSE4.2, which sharp (previews, the dashboard's thumbnails) needs on x86-64";
  const fix = "run Shuttle on a CPU with SSE4.2 (x86-64-v2: Intel since 2008, AMD since 2011); in a virtual machine, give it the host's CPU model (QEMU: -cpu host or -cpu max)";
  if (configured !== undefined) {
    return fail('cpu', `${lacks}: with ${configured} the daemon makes no previews or thumbnails`, `${fix}; or leave [api] listen unset and set [previews] make = "never"`);
  }
  return warn('cpu', `${lacks}: nothing configured makes previews, but [api] or previews would make none, nor would shuttle tether`, fix);
}

// ---- state, destinations, sandbox ----

/** ReadWritePaths= of the installed daemon unit and its drop-ins: what the sandbox lets it write. */
async function sandboxWritablePaths(sys: System): Promise<string[] | undefined> {
  const unit = await sys.find(UNIT_DIRS, 'shuttle.service');
  if (unit === undefined) return undefined;
  const texts = [await sys.text(unit)];
  for (const dir of UNIT_DIRS) {
    const d = join(dir, 'shuttle.service.d');
    for (const f of (await readdir(sys.path(d)).catch(() => [] as string[])).filter((x) => x.endsWith('.conf')).sort()) texts.push(await sys.text(join(d, f)));
  }
  let paths: string[] = [];
  for (const line of texts.join('\n').split('\n')) {
    const m = /^\s*ReadWritePaths\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    // An empty assignment resets the list, as systemd reads it.
    if (m[1]!.trim() === '') paths = [];
    else
      paths.push(
        ...m[1]!
          .trim()
          .split(/\s+/)
          .map((p) => p.replace(/^[-+]+/, '')),
      );
  }
  return paths;
}

function under(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

async function checkStateDir(sys: System, opts: DoctorOptions, user: Principal): Promise<CheckResult> {
  const dir = opts.stateDir;
  let st: Stats;
  try {
    st = await stat(dir);
  } catch {
    if (dir === SERVICE_STATE_DIR) return ok('state-dir', `${dir} does not exist yet; systemd creates it for the service (StateDirectory=)`);
    let parent = dirname(dir);
    while (
      !(await stat(parent).then(
        () => true,
        () => false,
      ))
    )
      parent = dirname(parent);
    if (permits(await stat(parent), user, 'wx') && (await reachable(join(parent, 'x'), user))) return ok('state-dir', `${dir} does not exist yet; it is made at first use`);
    return fail('state-dir', `${dir} does not exist and ${user.name} cannot create it`, `sudo install -d -o ${SERVICE_USER} -g ${SERVICE_USER} -m 0750 ${dir}`);
  }
  if (!st.isDirectory()) return fail('state-dir', `${dir} is not a directory`, 'point state_dir in the config at a directory');
  if (!permits(st, user, 'rwx') || !(await reachable(dir, user))) {
    return fail('state-dir', `${dir} is not writable by ${user.name} (${describeOwner(st)})`, `sudo chown -R ${SERVICE_USER}:${SERVICE_USER} ${dir}`);
  }
  const writable = await sandboxWritablePaths(sys);
  if (writable !== undefined && dir !== SERVICE_STATE_DIR && !writable.some((p) => under(dir, p))) {
    return fail(
      'state-dir',
      `${dir} is outside what the service's sandbox may write (${[SERVICE_STATE_DIR, ...writable].join(', ')})`,
      `sudo systemctl edit shuttle, and add:\n[Service]\nReadWritePaths=${dir}`,
    );
  }
  return ok('state-dir', `${dir} is writable by ${user.name}`);
}

function formatGiB(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

async function checkDestinations(sys: System, opts: DoctorOptions, user: Principal): Promise<CheckResult[]> {
  const list = opts.config.destinations;
  if (list.length === 0) {
    return [
      warn(
        'destinations',
        'no destinations configured: the daemon has nowhere to copy to',
        'add [[destinations]] tables with a path to /etc/shuttle/config.toml, then: sudo systemctl restart shuttle',
      ),
    ];
  }
  const writable = await sandboxWritablePaths(sys);
  const results: CheckResult[] = [];
  for (const d of list) {
    const id = `destination:${d.name}`;
    let st: Stats;
    try {
      st = await stat(d.path);
    } catch (err) {
      results.push(fail(id, `${d.path} is missing (${errnoCode(err) ?? 'unreadable'})`, 'mount the drive that holds it, or create the folder for the service user'));
      continue;
    }
    if (!permits(st, user, 'rwx') || !(await reachable(d.path, user))) {
      results.push(
        fail(
          id,
          `${d.path} is not writable by ${user.name} (${describeOwner(st)})`,
          `sudo chown ${SERVICE_USER}:${SERVICE_USER} ${d.path} (or give group ${SERVICE_USER} write access)`,
        ),
      );
      continue;
    }
    if (writable !== undefined && !writable.some((p) => under(d.path, p))) {
      results.push(
        fail(
          id,
          `${d.path} is outside what the service's sandbox may write (${writable.join(', ') || 'nothing'})`,
          `sudo systemctl edit shuttle, and add:\n[Service]\nReadWritePaths=${d.path}`,
        ),
      );
      continue;
    }
    const fs = await statfs(d.path);
    const free = Number(fs.bavail) * Number(fs.bsize);
    const total = Number(fs.blocks) * Number(fs.bsize);
    const space = `${formatGiB(free)} free of ${formatGiB(total)}`;
    if (d.minFreeBytes !== undefined && free < d.minFreeBytes) {
      results.push(fail(id, `${d.path}: ${space}, below its min_free_bytes (${formatGiB(d.minFreeBytes)})`, 'free space there or add a larger drive'));
    } else if (free < LOW_SPACE_BYTES) {
      results.push(warn(id, `${d.path}: only ${space}`, 'free space there before the next shoot'));
    } else {
      results.push(ok(id, `${d.path}: writable, ${space}`));
    }
  }
  return results;
}

// ---- clock and S3 ----

function run(cmd: string, args: readonly string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout) => resolve(err ? undefined : stdout.trim()));
  });
}

async function checkClock(sys: System, opts: DoctorOptions): Promise<CheckResult> {
  const now = (opts.now ?? (() => new Date()))();
  // The clock cannot be earlier than the day this program was built.
  const built = await stat(join(opts.programRoot, 'package.json'))
    .then((s) => s.mtime)
    .catch(() => undefined);
  if (built !== undefined && now.getTime() < built.getTime() - 24 * 3600_000) {
    return fail(
      'clock',
      `the clock says ${now.toISOString()}, before this program was built (${built.toISOString().slice(0, 10)})`,
      'set the time (sudo timedatectl set-time ...) and enable NTP: sudo timedatectl set-ntp true; without a network, fit an RTC battery',
    );
  }
  const synced = sys.root === '/' ? await run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], 3_000) : undefined;
  const marker = (await sys.text('/run/systemd/timesync/synchronized')) !== undefined;
  if (synced === 'yes' || marker) return ok('clock', `${now.toISOString()}, synchronised by NTP`);
  if (synced === 'no') {
    return warn(
      'clock',
      `${now.toISOString()}, not synchronised: capture dates in names and S3 signatures rely on it`,
      'sudo timedatectl set-ntp true (needs a network); S3 refuses requests from a clock more than 15 minutes off',
    );
  }
  return ok('clock', `${now.toISOString()} (synchronisation state unknown here)`);
}

/** Seconds the local clock is off from the server's Date header, if the server sends one. */
async function clockSkewMs(endpoint: string, now: () => Date, signal: AbortSignal): Promise<number | undefined> {
  try {
    const res = await fetch(endpoint, { method: 'HEAD', signal });
    const date = res.headers.get('date');
    return date ? now().getTime() - new Date(date).getTime() : undefined;
  } catch {
    return undefined;
  }
}

async function checkS3(sys: System, opts: DoctorOptions): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const unitInstalled = (await sys.find(UNIT_DIRS, 'shuttle.service')) !== undefined;
  const serviceCreds = sys.path(SERVICE_CREDENTIALS_FILE);
  const credsPresent = await exists(serviceCreds);
  if (unitInstalled && !credsPresent) {
    results.push(
      fail(
        'credentials-file',
        `${SERVICE_CREDENTIALS_FILE} is missing: shuttle.service loads it (LoadCredential=) and does not start without it`,
        `sudo install -m 0600 /dev/null ${SERVICE_CREDENTIALS_FILE} (then put S3 keys in it if you upload)`,
      ),
    );
  }
  const up = opts.config.upload;
  if (up?.target === undefined) {
    results.push(ok('s3', 'no [upload] target configured; nothing to check'));
    return results;
  }
  const { bucket } = parseS3Url(up.target);
  // The AWS SDK only when there is a bucket to ask: `shuttle tether` imports this module too.
  const [{ HeadBucketCommand }, { createS3Client }, { resolveCredentials }] = await Promise.all([
    import('@aws-sdk/client-s3'),
    import('../upload/client.js'),
    import('../upload/credentials.js'),
  ]);
  // What the service would use: the configured file, else the file systemd hands it (readable by root here).
  const readable = await access(serviceCreds, fsConstants.R_OK).then(
    () => true,
    () => false,
  );
  const credentialsFile = up.credentialsFile ?? (unitInstalled && readable ? serviceCreds : undefined);
  let creds;
  try {
    creds = await resolveCredentials({ credentialsFile, env: opts.env ?? process.env });
  } catch (err) {
    results.push(
      fail('s3', `credentials: ${(err as Error).message}`, `put aws_access_key_id and aws_secret_access_key under [default] in ${credentialsFile ?? SERVICE_CREDENTIALS_FILE}`),
    );
    return results;
  }
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const { client, options } = createS3Client(
    { provider: up.provider, endpoint: up.endpoint, region: up.region, credentials: creds.credentials, connectionTimeoutMs: timeoutMs, socketTimeoutMs: timeoutMs },
    opts.env ?? process.env,
  );
  const endpoint = options.endpoint ?? `https://s3.${options.region ?? 'us-east-1'}.amazonaws.com`;
  const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])]);
  const skew = await clockSkewMs(endpoint, opts.now ?? (() => new Date()), signal);
  const skewNote = skew !== undefined && Math.abs(skew) > MAX_CLOCK_SKEW_MS ? `; this clock is ${Math.round(skew / 1000)} s off the server's` : '';
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: signal });
    if (skewNote) results.push(warn('s3', `bucket ${bucket} at ${endpoint} answers${skewNote}`, 'enable NTP: sudo timedatectl set-ntp true'));
    else results.push(ok('s3', `bucket ${bucket} at ${endpoint} answers; credentials from ${creds.origin} accepted`));
  } catch (err) {
    const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; message?: string };
    const status = e.$metadata?.httpStatusCode;
    if (status === 403 || e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch') {
      results.push(
        fail(
          's3',
          `bucket ${bucket} at ${endpoint}: access denied (HTTP ${status ?? '?'}, credentials from ${creds.origin})${skewNote}`,
          `check the keys in ${credentialsFile ?? 'the AWS credentials'} and that they may list and write the bucket${skewNote ? '; fix the clock' : ''}`,
        ),
      );
    } else if (status === 404 || e.name === 'NotFound' || e.name === 'NoSuchBucket') {
      results.push(fail('s3', `bucket ${bucket} does not exist at ${endpoint}`, 'create it, or fix target in [upload]'));
    } else if (status !== undefined) {
      results.push(fail('s3', `bucket ${bucket} at ${endpoint}: HTTP ${status} (${e.name ?? 'error'})`, 'check endpoint, region and provider in [upload]'));
    } else {
      const why = errnoCode(err) ?? e.code ?? e.name ?? 'no answer';
      results.push(
        fail(
          's3',
          `${endpoint} is unreachable (${why}: ${e.message ?? ''})`.replace(/: \)$/, ')'),
          'check the network and the endpoint in [upload]; uploads wait in the queue meanwhile',
        ),
      );
    }
  } finally {
    client.destroy();
  }
  return results;
}

// ---- all of them ----

/** Every check, in the order a person fixes things: install, system, service, devices, storage, time, cloud. */
export async function runDoctorChecks(opts: DoctorOptions): Promise<CheckResult[]> {
  const sys = new System(opts.root ?? '/');
  const service = await serviceUser(sys);
  // Judged for the service user; for whoever runs doctor when there is none.
  const user = service ?? currentUser();
  const procs = await processes(sys);
  return [
    checkServiceUser(service),
    await checkInstalled(sys, opts, 'units'),
    await checkInstalled(sys, opts, 'rules'),
    await checkEject(sys, opts),
    checkUdevd(procs),
    await checkCpu(sys, opts),
    await checkDaemon(opts),
    ...(await checkCameras(sys, user)),
    checkDesktopGrabbers(procs),
    await checkStateDir(sys, opts, user),
    ...(await checkDestinations(sys, opts, user)),
    await checkClock(sys, opts),
    ...(await checkS3(sys, opts)),
  ];
}

/** The state dir the service uses: the one given or configured, else systemd's StateDirectory when the unit is installed. */
export async function serviceStateDir(resolved: string, explicit: boolean, root = '/'): Promise<string> {
  if (explicit) return resolved;
  const sys = new System(root);
  return (await sys.find(UNIT_DIRS, 'shuttle.service')) !== undefined ? SERVICE_STATE_DIR : resolved;
}
