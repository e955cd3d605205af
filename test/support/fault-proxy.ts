/**
 * A TCP proxy in front of a real HTTP/1.1 server that damages chosen requests on their way in: flip a
 * byte of the body, reset the connection part-way through the body, stall it (nothing more in either
 * direction), or answer in the server's place with an error status. It parses just enough of each request
 * (request line, headers, Content-Length body) to know where one ends and the next begins on a kept-alive
 * connection; responses pass through untouched.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export interface ProxiedRequest {
  /** Order of arrival over all connections, from 0. */
  index: number;
  method: string;
  url: string;
  headers: Readonly<Record<string, string>>;
  contentLength: number;
  /** The fault applied to it, if any. */
  fault?: Fault['kind'];
}

export type Fault =
  /** XOR 0xff into the body byte at `offset` (default: the middle byte). */
  | { kind: 'flip-byte'; offset?: number }
  /** Reset both connections (TCP RST) after this many body bytes went through (default: half). */
  | { kind: 'drop'; afterBodyBytes?: number }
  /** Forward this many body bytes (default: half), then nothing more in either direction until the client gives up. */
  | { kind: 'stall'; afterBodyBytes?: number }
  /** Do not forward; answer with this status and an S3-style XML error, then close. */
  | { kind: 'respond'; status: number; code?: string };

export interface FaultRule {
  match: (request: ProxiedRequest) => boolean;
  fault: Fault;
  /** How many matching requests get the fault (default 1). */
  times?: number;
}

export interface InjectedRule {
  /** Requests this rule has damaged so far. */
  readonly hits: number;
}

/** Matches UploadPart requests, optionally only the given part number. */
export function isUploadPart(partNumber?: number): (r: ProxiedRequest) => boolean {
  return (r) => {
    if (r.method !== 'PUT') return false;
    const q = new URL(r.url, 'http://x').searchParams;
    return q.has('uploadId') && q.has('partNumber') && (partNumber === undefined || q.get('partNumber') === String(partNumber));
  };
}

/** Matches a single PutObject request (a PUT with a body that is not an UploadPart). */
export function isPutObject(r: ProxiedRequest): boolean {
  const q = new URL(r.url, 'http://x').searchParams;
  return r.method === 'PUT' && !q.has('uploadId') && r.contentLength > 0;
}

interface ActiveRule extends FaultRule {
  hits: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');

export class FaultProxy {
  readonly #server: Server;
  readonly #upstreamPort: number;
  readonly #rules: ActiveRule[] = [];
  readonly #sockets = new Set<Socket>();
  readonly requests: ProxiedRequest[] = [];

  private constructor(server: Server, upstreamPort: number) {
    this.#server = server;
    this.#upstreamPort = upstreamPort;
  }

  static async start(upstreamPort: number): Promise<FaultProxy> {
    const server = createServer();
    const proxy = new FaultProxy(server, upstreamPort);
    server.on('connection', (client) => proxy.#handle(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  inject(rule: FaultRule): InjectedRule {
    const active: ActiveRule = { ...rule, hits: 0 };
    this.#rules.push(active);
    return {
      get hits() {
        return active.hits;
      },
    };
  }

  clearRules(): void {
    this.#rules.length = 0;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #pickFault(request: ProxiedRequest): Fault | undefined {
    for (const rule of this.#rules) {
      if (rule.hits >= (rule.times ?? 1) || !rule.match(request)) continue;
      rule.hits++;
      return rule.fault;
    }
    return undefined;
  }

  #handle(client: Socket): void {
    const upstream = connect({ host: '127.0.0.1', port: this.#upstreamPort });
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    client.on('close', () => {
      this.#sockets.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      this.#sockets.delete(upstream);
      client.destroy();
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());

    let responsesFlow = true;
    upstream.on('data', (chunk: Buffer) => {
      if (responsesFlow) client.write(chunk);
    });

    let head: Buffer = Buffer.alloc(0);
    let bodyLeft = 0;
    let bodySeen = 0;
    let current: ProxiedRequest | undefined;
    let fault: Fault | undefined;
    let dead = false;
    let passthrough = false;

    const respond = (f: Extract<Fault, { kind: 'respond' }>): void => {
      const code = f.code ?? (f.status === 503 ? 'ServiceUnavailable' : 'InternalError');
      const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the test fault proxy</Message></Error>`;
      responsesFlow = false;
      client.end(`HTTP/1.1 ${f.status} Injected\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(xml)}\r\nConnection: close\r\n\r\n${xml}`);
      upstream.destroy();
      dead = true;
    };

    const onBody = (chunk: Buffer): void => {
      const take = chunk.subarray(0, bodyLeft);
      const start = bodySeen;
      bodySeen += take.length;
      bodyLeft -= take.length;
      const length = current?.contentLength ?? 0;
      let out = take;
      if (fault?.kind === 'flip-byte') {
        const at = fault.offset ?? Math.floor(length / 2);
        if (at >= start && at < start + take.length) {
          out = Buffer.from(take);
          out[at - start] = (out[at - start] ?? 0) ^ 0xff;
        }
      } else if (fault?.kind === 'drop' || fault?.kind === 'stall') {
        const limit = fault.afterBodyBytes ?? Math.floor(length / 2);
        if (start + take.length >= limit) {
          upstream.write(take.subarray(0, Math.max(0, limit - start)));
          dead = true;
          if (fault.kind === 'drop') {
            client.resetAndDestroy();
            upstream.resetAndDestroy();
          } else {
            // Stalled: swallow whatever else either side sends; the client's timeout ends it.
            responsesFlow = false;
          }
          return;
        }
      } else if (fault?.kind === 'respond') {
        // Swallow the body of a request answered in the server's place, then answer.
        if (bodyLeft === 0) respond(fault);
        return;
      }
      upstream.write(out);
      if (bodyLeft === 0) {
        current = undefined;
        fault = undefined;
      }
      const rest = chunk.subarray(take.length);
      if (rest.length > 0) onData(rest);
    };

    const onData = (chunk: Buffer): void => {
      if (dead) return;
      if (passthrough) {
        upstream.write(chunk);
        return;
      }
      if (bodyLeft > 0) {
        onBody(chunk);
        return;
      }
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf(HEADER_END);
      if (end < 0) return;
      const headBytes = head.subarray(0, end + HEADER_END.length);
      const rest = head.subarray(end + HEADER_END.length);
      head = Buffer.alloc(0);
      const lines = headBytes.toString('latin1').split('\r\n');
      const [method = '', url = ''] = (lines[0] ?? '').split(' ');
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const contentLength = Number(headers['content-length'] ?? 0);
      current = { index: this.requests.length, method, url, headers, contentLength };
      this.requests.push(current);
      fault = this.#pickFault(current);
      if (fault !== undefined) current.fault = fault.kind;
      bodyLeft = contentLength;
      bodySeen = 0;
      if (headers['transfer-encoding'] !== undefined) {
        // Not needed by these tests (bodies have a known length); forward the rest untouched.
        passthrough = true;
        upstream.write(headBytes);
        if (rest.length > 0) upstream.write(rest);
        return;
      }
      if (fault?.kind === 'respond') {
        // A client waiting for "100 Continue" sends no body until it hears from us: answer now.
        if (headers['expect']?.toLowerCase() === '100-continue' || contentLength === 0) {
          respond(fault);
          return;
        }
      } else {
        upstream.write(headBytes);
      }
      if (rest.length > 0) onData(rest);
    };

    client.on('data', onData);
  }
}
