import { createServer, type AddressInfo } from 'node:net';

/** Loopback ports free right now, for servers that cannot listen on port 0 and say which port they got. */
export async function freePorts(count: number): Promise<number[]> {
  // Hold every listener until all are open, so the kernel cannot hand out the same port twice.
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}
