/**
 * The upload suites' peer: a real Swift s3api server with the fault-injecting proxy in front of it, and
 * an admin client that talks to Swift directly (to look at what really got stored).
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/upload/client.js';
import { FaultProxy } from './fault-proxy.js';
import { startSwift, type SwiftServer } from './swift.js';

export interface SwiftBehindProxy {
  swift: SwiftServer;
  proxy: FaultProxy;
  admin: S3Client;
}

export async function startSwiftBehindProxy(): Promise<SwiftBehindProxy> {
  const swift = await startSwift();
  try {
    const proxy = await FaultProxy.start(swift.port);
    return { swift, proxy, admin: swift.adminClient() };
  } catch (err) {
    await swift.stop();
    throw err;
  }
}

/** Stops whatever of it was started (a failed start leaves parts undefined). */
export async function stopSwiftBehindProxy(p: Partial<SwiftBehindProxy>): Promise<void> {
  p.admin?.destroy();
  await p.proxy?.stop();
  await p.swift?.stop();
}

/** Shuttle's own S3 client (profile `swift`), sending through the proxy. */
export function clientThroughProxy({ swift, proxy }: SwiftBehindProxy, socketTimeoutMs: number): S3Client {
  return createS3Client({
    provider: 'swift',
    endpoint: proxy.endpoint,
    credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
    socketTimeoutMs,
  }).client;
}
