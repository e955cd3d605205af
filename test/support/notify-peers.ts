import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePorts } from './ports.js';

/**
 * Real peers for the daemon's outputs: an HTTP receiver (webhook, ntfy), Debian's aiosmtpd as the SMTP
 * server, Debian's mosquitto as the MQTT broker with mosquitto_sub as the witness. A missing program
 * fails the test that needs it, naming the package.
 */

/** Resolves when `accept` holds for the list, checked whenever `changed` is called. */
export class Waiters<T> {
  readonly items: T[] = [];
  readonly #waiting = new Set<{ accept: (items: T[]) => boolean; resolve: () => void }>();
  push(item: T): void {
    this.items.push(item);
    for (const w of [...this.#waiting]) {
      if (w.accept(this.items)) {
        this.#waiting.delete(w);
        w.resolve();
      }
    }
  }
  /** Waits until `accept(items)`; fails after `timeoutMs` naming `what` and what came. */
  until(what: string, accept: (items: T[]) => boolean, timeoutMs = 30_000): Promise<T[]> {
    if (accept(this.items)) return Promise.resolve(this.items);
    return new Promise((resolve, reject) => {
      const w = {
        accept,
        resolve: () => {
          clearTimeout(timer);
          resolve(this.items);
        },
      };
      const timer = setTimeout(() => {
        this.#waiting.delete(w);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.items).slice(0, 3000)}`));
      }, timeoutMs);
      this.#waiting.add(w);
    });
  }
}

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface HttpReceiver {
  url: string;
  requests: Waiters<ReceivedRequest>;
  /** The status answered to each request (default 200). */
  status: number;
  close(): Promise<void>;
}

export async function startHttpReceiver(): Promise<HttpReceiver> {
  const requests = new Waiters<ReceivedRequest>();
  const r: HttpReceiver = { url: '', requests, status: 200, close: async () => {} };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(r.status).end();
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  r.close = () => new Promise((resolve) => server.close(() => resolve()));
  return r;
}

export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  attachments: Array<{ filename: string; content: string }>;
}

export interface SmtpServer {
  port: number;
  mails: Waiters<ReceivedMail>;
  close(): Promise<void>;
}

/** Debian's Python with aiosmtpd (python3-aiosmtpd); the first python3 on PATH may be another one. */
const DEBIAN_PYTHON = '/usr/bin/python3';

/**
 * aiosmtpd as a real SMTP server; each message is parsed by Python's own email package (an independent
 * MIME parser) and printed as one JSON line.
 */
export async function startSmtpServer(): Promise<SmtpServer> {
  const [port] = (await freePorts(1)) as [number];
  const script = `
import json, sys, time
from email import message_from_bytes, policy
from aiosmtpd.controller import Controller
class Handler:
    async def handle_DATA(self, server, session, envelope):
        m = message_from_bytes(envelope.content, policy=policy.default)
        body = m.get_body(preferencelist=("plain",))
        out = {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "subject": str(m["subject"]),
               "text": body.get_content() if body is not None else "",
               "attachments": [{"filename": a.get_filename(), "content": a.get_content() if isinstance(a.get_content(), str) else a.get_content().decode()} for a in m.iter_attachments()]}
        print(json.dumps(out), flush=True)
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
`;
  const child = spawn(DEBIAN_PYTHON, ['-c', script, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const mails = new Waiters<ReceivedMail>();
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.once('error', (e) => reject(new Error(`${DEBIAN_PYTHON} cannot run (apt-get install python3-aiosmtpd): ${e.message}`)));
    child.once('exit', (code) => reject(new Error(`aiosmtpd exited with ${code} before it was ready (apt-get install python3-aiosmtpd): ${err}`)));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'ready') resolve();
        else mails.push(JSON.parse(line) as ReceivedMail);
      }
    });
  });
  child.removeAllListeners('exit');
  return { port, mails, close: () => stop(child) };
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('close', () => resolve());
    child.kill('SIGTERM');
  });
}

function lines(child: ChildProcess, onLine: (line: string) => void, from: 'stdout' | 'stderr' = 'stdout'): void {
  let buf = '';
  child[from]!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
  });
}

/** Waits for a child's line that `ready` accepts; rejects (naming the package) when the program is missing or exits. */
function readyLine(child: ChildProcess, ready: (line: string) => boolean, what: string, pkg: string, from: 'stdout' | 'stderr' = 'stdout'): Promise<void> {
  let said = '';
  if (from === 'stdout') child.stderr?.on('data', (d: Buffer) => (said += d.toString()));
  return new Promise<void>((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`${what} cannot run (apt-get install ${pkg}): ${e.message}`)));
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code} before it was ready: ${said}`)));
    lines(
      child,
      (line) => {
        said += `${line}\n`;
        if (ready(line)) resolve();
      },
      from,
    );
  }).finally(() => child.removeAllListeners('exit'));
}

export interface Broker {
  port: number;
  user: string;
  password: string;
  close(): Promise<void>;
}

/** mosquitto on loopback, refusing clients without the user and password (so credentials are really passed). */
export async function startMosquitto(dir: string, port?: number): Promise<Broker> {
  const p = port ?? ((await freePorts(1)) as [number])[0];
  const user = 'station';
  const password = 'mqtt-Secret-4711';
  const passwd = join(dir, `mosquitto-${p}.passwd`);
  await writeFile(passwd, '');
  await new Promise<void>((resolve, reject) => {
    const c = spawn('mosquitto_passwd', ['-b', passwd, user, password], { stdio: 'ignore' });
    c.once('error', (e) => reject(new Error(`mosquitto_passwd cannot run (apt-get install mosquitto): ${e.message}`)));
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_passwd exited ${code}`))));
  });
  const conf = join(dir, `mosquitto-${p}.conf`);
  const settings = [`listener ${p} 127.0.0.1`, 'allow_anonymous false', `password_file ${passwd}`, 'persistence false', 'log_dest stderr', 'log_type all'];
  // Started as root, mosquitto switches to its own user, which cannot read the test's private folder.
  if (process.getuid?.() === 0) settings.push('user root');
  await writeFile(conf, `${settings.join('\n')}\n`);
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  await readyLine(child, (l) => / running$/.test(l), 'mosquitto', 'mosquitto', 'stderr');
  return { port: p, user, password, close: () => stop(child) };
}

export interface MqttMessage {
  retained: boolean;
  topic: string;
  payload: string;
}

export interface Subscriber {
  messages: Waiters<MqttMessage>;
  close(): Promise<void>;
}

/** mosquitto_sub as the independent witness: resolves once the broker acknowledged the subscription. */
export async function subscribe(broker: Broker, topic: string, extra: string[] = []): Promise<Subscriber> {
  const args = ['-h', '127.0.0.1', '-p', String(broker.port), '-u', broker.user, '-P', broker.password, '-t', topic, '-v', '-d', '-F', '%r %t %p', ...extra];
  // Line-buffered: through a pipe, mosquitto_sub would hold its SUBACK line until the first message.
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const messages = new Waiters<MqttMessage>();
  const ready = readyLine(child, (l) => l.includes('SUBACK'), 'mosquitto_sub', 'mosquitto-clients');
  lines(child, (line) => {
    const m = /^([01]) (\S+) (.*)$/s.exec(line);
    if (m) messages.push({ retained: m[1] === '1', topic: m[2]!, payload: m[3]! });
  });
  await ready;
  return { messages, close: () => stop(child) };
}
