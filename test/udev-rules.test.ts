import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LIGHT_DRIVER_TABLE } from '../src/device/hid/lights.js';
import { CAMERA_RULES_FILE, generateCameraRules, renderCameraRules, usbIdMatch, usbIdsFromQuirks, type UsbId } from '../scripts/gen-udev-rules.js';

/**
 * The udev rules: the camera part is generated from the PTP quirks table and committed, so the
 * committed file must be exactly what the generator makes now; udev itself must parse every line.
 * (What the rules do to a plugged device is proven in the systemd guest, test/hil.)
 */

const REPO = fileURLToPath(new URL('..', import.meta.url));
const UDEV_DIR = join(REPO, 'udev');
const NODE = process.execPath;

describe('camera rules', () => {
  test('committed-camera-rules-are-what-the-generator-makes-from-the-quirks-table', async () => {
    const { text } = await generateCameraRules();
    expect(await readFile(CAMERA_RULES_FILE, 'utf8')).toBe(text);
  });

  test('every-usb-id-in-the-quirks-table-has-a-rule-granting-the-service-group', async () => {
    const { ids } = await generateCameraRules();
    const lines = (await readFile(CAMERA_RULES_FILE, 'utf8')).split('\n');
    for (const id of ids) {
      const rule = lines.find((l) => l.startsWith(`${usbIdMatch(id)},`));
      expect(rule, `no rule for ${id.vendorId.toString(16)}:${id.productId?.toString(16) ?? '*'}`).toBeDefined();
      expect(rule).toContain('GROUP="shuttle"');
      expect(rule).toContain('TAG+="uaccess"');
    }
  });

  test('the-generator-script-run-by-node-checks-the-committed-file', () => {
    const r = spawnSync(NODE, [join(REPO, 'scripts/gen-udev-rules.ts'), '--check'], { cwd: REPO, encoding: 'utf8' });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  });

  test('the-generator-script-reports-a-stale-rules-file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shuttle-rules-'));
    try {
      const stale = join(dir, '70-shuttle-cameras.rules');
      await writeFile(stale, (await readFile(CAMERA_RULES_FILE, 'utf8')).replace(/^ENV\{ID_MTP_DEVICE\}.*\n/m, ''));
      const r = spawnSync(NODE, [join(REPO, 'scripts/gen-udev-rules.ts'), '--check', '--file', stale], { cwd: REPO, encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('is not what the quirks table generates');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('class-rules-cover-ptp-still-image-interfaces-and-mtp-devices', async () => {
    const text = await readFile(CAMERA_RULES_FILE, 'utf8');
    expect(text).toMatch(/^ENV\{ID_USB_INTERFACES\}=="\*:060101:\*", GROUP="shuttle", MODE="0660", TAG\+="uaccess"/m);
    expect(text).toMatch(/^ENV\{ID_MTP_DEVICE\}=="1", GROUP="shuttle", MODE="0660", TAG\+="uaccess"/m);
    // Nothing long-running (or running at all) from the camera rules.
    expect(text).not.toMatch(/RUN\+?=/);
  });
});

describe('rendering ids', () => {
  const module = {
    DEFAULT_QUIRKS: { acceptZeroTransactionId: false },
    quirksFor: () => ({}),
    USB_RULES: [
      { vendorId: 0x04a9, productId: 0x32f4, why: 'Canon EOS R5' },
      { vendorId: 0x04b0, why: 'every Nikon' },
      { vendorId: 0x04a9, productId: 0x32f4, why: 'Canon EOS R5' },
    ],
    OTHER_TABLE: [{ vendorId: 0x1a98, productId: 0x2041, name: 'Leica SL2' }],
    NOT_USB: [{ manufacturer: 'leica' }],
  };

  test('ids-come-from-every-exported-array-whose-entries-carry-a-vendor-id', () => {
    expect(usbIdsFromQuirks(module)).toEqual([
      { vendorId: 0x04a9, productId: 0x32f4, label: 'Canon EOS R5' },
      { vendorId: 0x04b0, productId: undefined, label: 'every Nikon' },
      { vendorId: 0x04a9, productId: 0x32f4, label: 'Canon EOS R5' },
      { vendorId: 0x1a98, productId: 0x2041, label: 'Leica SL2' },
    ]);
  });

  test('a-malformed-usb-id-in-the-table-is-an-error-not-a-missing-rule', () => {
    expect(() => usbIdsFromQuirks({ T: [{ vendorId: '04a9' }] })).toThrow(/bad USB id/);
    expect(() => usbIdsFromQuirks({ T: [{ vendorId: 0x04a9, productId: 0x1ffff }] })).toThrow(/bad USB id/);
  });

  test('a-product-gets-an-exact-rule-and-a-vendor-only-entry-is-limited-to-camera-like-interfaces', () => {
    const text = renderCameraRules(usbIdsFromQuirks(module));
    expect(text).toContain('# 04a9:32f4 Canon EOS R5\nATTR{idVendor}=="04a9", ATTR{idProduct}=="32f4", GROUP="shuttle", MODE="0660", TAG+="uaccess"');
    expect(text).toMatch(/# 04b0:\* every Nikon\nATTR\{idVendor\}=="04b0", ENV\{ID_USB_INTERFACES\}=="\*:060101:\*\|\*:ff\[0-9a-f\]/);
    expect(text).toContain('ATTR{idVendor}=="1a98", ATTR{idProduct}=="2041"');
  });

  test('output-is-stable-sorted-and-has-one-rule-per-id', () => {
    const ids: UsbId[] = usbIdsFromQuirks(module);
    const a = renderCameraRules(ids);
    expect(renderCameraRules([...ids].reverse())).toBe(a);
    expect(a.match(/ATTR\{idProduct\}=="32f4"/g)).toHaveLength(1);
    const order = [...a.matchAll(/^ATTR\{idVendor\}=="([0-9a-f]{4})"/gm)].map((m) => m[1]);
    expect(order).toEqual(['04a9', '04b0', '1a98']);
  });
});

describe('card rules', () => {
  test('a-usb-block-device-with-a-camera-filesystem-wants-the-card-unit-and-nothing-runs', async () => {
    const text = await readFile(join(UDEV_DIR, '70-shuttle-cards.rules'), 'utf8');
    expect(text).toMatch(/^ENV\{ID_BUS\}!="usb", GOTO="shuttle_cards_end"$/m);
    expect(text).toMatch(/^ENV\{ID_FS_TYPE\}!="vfat\|exfat\|ntfs", GOTO="shuttle_cards_end"$/m);
    expect(text).toMatch(/TAG\+="systemd", ENV\{SYSTEMD_WANTS\}\+="shuttle-card@%k\.service"/);
    expect(text).not.toMatch(/RUN\+?=/);
    // The unit it names exists as a template.
    expect(existsSync(join(REPO, 'systemd', 'shuttle-card@.service'))).toBe(true);
  });
});

describe('status light rules', () => {
  test('every-light-in-the-driver-table-has-its-hidraw-node-given-to-the-service-group-and-nothing-else-does', async () => {
    const text = await readFile(join(UDEV_DIR, '70-shuttle-lights.rules'), 'utf8');
    expect(text).toMatch(/^SUBSYSTEM!="hidraw", GOTO="shuttle_lights_end"$/m);
    const granted = [...text.matchAll(/^ATTRS\{idVendor\}=="([0-9a-f]{4})", ATTRS\{idProduct\}=="([0-9a-f]{4})", GROUP="shuttle", MODE="0660"$/gm)].map((m) => `${m[1]}:${m[2]}`);
    const hex = (n: number): string => n.toString(16).padStart(4, '0');
    const lights = Object.values(LIGHT_DRIVER_TABLE).flatMap((d) => d.ids.map((id) => `${hex(id.vendorId)}:${hex(id.productId)}`));
    // Exactly the lights: a hidraw node of any other device (a keyboard) would let the daemon read what is typed.
    expect([...granted].sort()).toEqual([...lights].sort());
    expect(text.split('\n').filter((l) => /GROUP=|MODE=/.test(l) && !l.startsWith('#') && !l.startsWith('ATTRS{idVendor}'))).toEqual([]);
    expect(text).not.toMatch(/RUN\+?=/);
  });
});

describe('udev parses the rules', () => {
  let rulesDir: string;
  beforeAll(async () => {
    rulesDir = await mkdtemp(join(tmpdir(), 'shuttle-udev-'));
    for (const f of await readdir(UDEV_DIR)) await copyFile(join(UDEV_DIR, f), join(rulesDir, f));
  });
  afterAll(async () => {
    await rm(rulesDir, { recursive: true, force: true });
  });

  /**
   * `udevadm test` reads every rules file and reports lines it cannot parse. It runs in a private mount
   * namespace whose /etc/udev/rules.d is our folder and whose /run/udev is empty, so the machine's
   * rules and udev database are neither used nor touched.
   */
  function udevadmTest(dir: string): string {
    if (process.getuid?.() !== 0) throw new Error('udevadm test in a private mount namespace needs root');
    const device = ['/sys/class/block/loop0', '/sys/class/mem/null', '/sys/devices/virtual/mem/null'].find((d) => existsSync(d));
    if (device === undefined) throw new Error('no device in /sys to run udevadm test on');
    const script = `mount --bind "$1" /etc/udev/rules.d && mount -t tmpfs tmpfs /run/udev 2>/dev/null; udevadm test --action=add "$2" 2>&1`;
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', dir, device], { encoding: 'utf8' });
    if (r.error) throw r.error;
    return r.stdout;
  }

  /** What udev said about a rules file, except the group warning of a machine without the shuttle group. */
  function complaints(output: string, file: string): string[] {
    return output.split('\n').filter((l) => l.includes(`${file}:`) && !/Unknown group 'shuttle'/.test(l));
  }

  test('udev-reads-every-rules-file-without-a-complaint', () => {
    const out = udevadmTest(rulesDir);
    for (const f of ['70-shuttle-cameras.rules', '70-shuttle-cards.rules', '70-shuttle-lights.rules']) {
      expect(out).toContain(`Reading rules file: /etc/udev/rules.d/${f}`);
      expect(complaints(out, f)).toEqual([]);
    }
  });

  test('udev-complains-about-a-line-it-cannot-parse', async () => {
    await writeFile(join(rulesDir, '71-broken.rules'), 'ENV{ID_BUS}=="usb", NOSUCHKEY="1"\n');
    try {
      expect(complaints(udevadmTest(rulesDir), '71-broken.rules').join('\n')).toMatch(/Invalid key/);
    } finally {
      await rm(join(rulesDir, '71-broken.rules'));
    }
  });
});
