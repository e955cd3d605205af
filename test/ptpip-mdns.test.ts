/** DNS-SD answers as the mDNS browser reads them (src/device/ptpip/mdns.ts): records in, services out, no socket. */
import { describe, expect, test } from 'vitest';
import { servicesIn } from '../src/device/ptpip/mdns.js';

const TYPE = '_ptp._tcp.local';
const FQDN = 'Cam One._ptp._tcp.local';

describe('mDNS answers', () => {
  test('a-ptr-with-its-srv-and-txt-is-a-service-at-the-sender-with-its-port-name-and-text', () => {
    const { up, goodbye } = servicesIn(
      [
        { type: 'PTR', name: '_PTP._tcp.local', ttl: 4500, data: FQDN },
        { type: 'SRV', name: FQDN.toLowerCase(), ttl: 120, data: { port: 15740, target: 'elsewhere.local' } },
        { type: 'TXT', name: FQDN, ttl: 4500, data: [Buffer.from('guid=AB12'), Buffer.from('model=Z 9'), Buffer.from('flag'), Buffer.from('=x')] },
        { type: 'A', name: 'elsewhere.local', ttl: 120, data: '10.9.9.9' },
      ],
      TYPE,
      '10.0.0.7',
    );
    expect(goodbye).toEqual([]);
    expect(up).toEqual([{ name: 'Cam One', fqdn: FQDN, host: 'elsewhere.local', port: 15740, referer: { address: '10.0.0.7' }, txt: { guid: 'AB12', model: 'Z 9', flag: true } }]);
  });

  test('a-ttl-0-ptr-is-a-goodbye-and-a-ptr-without-srv-or-of-another-type-is-nothing', () => {
    const { up, goodbye } = servicesIn(
      [
        { type: 'PTR', name: TYPE, ttl: 0, data: FQDN },
        { type: 'PTR', name: TYPE, ttl: 4500, data: 'Unresolved._ptp._tcp.local' },
        { type: 'PTR', name: '_http._tcp.local', ttl: 4500, data: 'Web._http._tcp.local' },
        { type: 'SRV', name: 'Web._http._tcp.local', ttl: 120, data: { port: 80, target: 'web.local' } },
      ],
      TYPE,
      '10.0.0.7',
    );
    expect(up).toEqual([]);
    expect(goodbye.map((s) => [s.fqdn, s.referer?.address])).toEqual([[FQDN, '10.0.0.7']]);
  });
});
