import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium (scripts/test.sh installs it): the browser the dashboard is tested and measured in. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Headless Chromium with a fresh profile (Playwright gives every launch a new temporary user data dir)
 * and nothing that talks to the network on its own. A missing browser fails the test, loudly.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: the dashboard's browser tests need Debian's chromium package (apt-get install chromium; scripts/test.sh does)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
}

/** A phone's viewport (CSS pixels of a common 6-inch phone). */
export const PHONE = { width: 390, height: 844 };
