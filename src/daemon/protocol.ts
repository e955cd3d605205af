import * as z from 'zod';
import { ShuttleError, isShuttleError, type ErrorCode } from '../errors.js';

/**
 * The control socket protocol: one JSON object per line in each direction.
 *
 *   request   {"v":1,"id":7,"cmd":"ingest","args":{"source":"/media/card"}}
 *   response  {"v":1,"id":7,"ok":true,"result":{...}}
 *             {"v":1,"id":7,"ok":false,"error":{"code":"USAGE","message":"...","context":{"reason":"unknown-command"}}}
 *
 * `v` is required so that a future daemon can refuse (or translate) an old client instead of guessing.
 * Requests on one connection are answered as they finish, not in order (a `wait` must not hold up a
 * `status`); `id` pairs them. Protocol-level problems are USAGE errors whose `context.reason` says which.
 */

export const PROTOCOL_VERSION = 1;
/** A request line longer than this is refused: requests are small, and a runaway client must not grow the daemon. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Responses can list many jobs; still bounded so that a confused peer cannot exhaust the client. */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

export type ProtocolProblem =
  | 'bad-json'
  | 'not-an-object'
  | 'bad-version'
  | 'unknown-command'
  | 'bad-args'
  | 'line-too-long'
  | 'too-many-connections'
  | 'idle-timeout'
  | 'shutting-down';

export type RequestId = string | number | null;

export interface WireError {
  code: ErrorCode;
  message: string;
  context?: Record<string, unknown>;
}

export type ControlResponse = { v: typeof PROTOCOL_VERSION; id: RequestId; ok: true; result: unknown } | { v: typeof PROTOCOL_VERSION; id: RequestId; ok: false; error: WireError };

/** Arguments of every command; strict, so a misspelt argument is an error rather than ignored. */
export const COMMAND_ARGS = {
  ping: z.strictObject({}),
  status: z.strictObject({}),
  /** `source`: an absolute folder or mount point, or a source URI (`ptpip:HOST`). */
  ingest: z.strictObject({ source: z.string().min(1).max(4096) }),
  /**
   * `stopping`: sent by a waiting `request ingest` that is itself being stopped (its card unit stops: the
   * card was pulled or is being ejected), which releases the card; without it the cancel is by hand, and
   * a card's job then ends with the card ejected.
   */
  cancel: z.strictObject({ job: z.int().min(1), stopping: z.literal(true).optional() }),
  /** Answers when the job has finished (any final state). */
  wait: z.strictObject({ job: z.int().min(1) }),
  /** Fires a tethered camera (`camera`: its device id; else the first tethered); answers with the verified shot. */
  capture: z.strictObject({ camera: z.string().min(1).max(4096).optional() }),
} as const;

export type CommandName = keyof typeof COMMAND_ARGS;
export type CommandArgs<C extends CommandName> = z.output<(typeof COMMAND_ARGS)[C]>;

export const COMMANDS = Object.keys(COMMAND_ARGS) as CommandName[];

export interface ParsedRequest<C extends CommandName = CommandName> {
  id: RequestId;
  cmd: C;
  args: CommandArgs<C>;
}

export function protocolError(reason: ProtocolProblem, message: string, context: Record<string, unknown> = {}): ShuttleError {
  return new ShuttleError('USAGE', message, { context: { reason, ...context } });
}

function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMAND_ARGS, name);
}

function requestId(value: unknown): RequestId {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value)) ? value : null;
}

/**
 * Parses one request line; throws a USAGE ShuttleError (with the request's id when it had one) that the server
 * sends back. `known`: the commands this server answers (a tethering session's socket knows capture only).
 */
export function parseRequest(line: string, known: readonly CommandName[] = COMMANDS): ParsedRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (cause) {
    throw protocolError('bad-json', `request is not JSON: ${(cause as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw protocolError('not-an-object', 'request must be a JSON object like {"v":1,"cmd":"status"}');
  }
  const req = raw as Record<string, unknown>;
  const id = requestId(req['id']);
  if (req['v'] !== PROTOCOL_VERSION) {
    throw protocolError('bad-version', `protocol version ${JSON.stringify(req['v'] ?? null)} is not supported (this daemon speaks v${PROTOCOL_VERSION})`, {
      id,
      supported: [PROTOCOL_VERSION],
    });
  }
  const cmd = req['cmd'];
  if (typeof cmd !== 'string' || !isCommand(cmd) || !known.includes(cmd)) {
    throw protocolError('unknown-command', `unknown command ${JSON.stringify(cmd ?? null)} (known: ${known.join(', ')})`, { id, known });
  }
  const parsed = COMMAND_ARGS[cmd].safeParse(req['args'] ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'args'}: ${i.message}`);
    throw protocolError('bad-args', `bad arguments for ${cmd}: ${problems.join('; ')}`, { id, cmd });
  }
  return { id, cmd, args: parsed.data } as ParsedRequest;
}

export function encodeRequest(id: RequestId, cmd: string, args: unknown): string {
  return `${JSON.stringify({ v: PROTOCOL_VERSION, id, cmd, args })}\n`;
}

export function encodeResult(id: RequestId, result: unknown): string {
  return `${JSON.stringify({ v: PROTOCOL_VERSION, id, ok: true, result })}\n`;
}

export function encodeError(id: RequestId, err: unknown): string {
  return `${JSON.stringify({ v: PROTOCOL_VERSION, id, ok: false, error: toWireError(err) })}\n`;
}

export function toWireError(err: unknown): WireError {
  if (isShuttleError(err)) {
    const context = { ...err.context };
    delete context['id'];
    return Object.keys(context).length ? { code: err.code, message: err.message, context } : { code: err.code, message: err.message };
  }
  return { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) };
}

export function fromWireError(e: WireError): ShuttleError {
  return new ShuttleError(e.code, e.message, { context: e.context ?? {} });
}

/** Parses a response line; a malformed one is the daemon's fault, reported as such. */
export function parseResponse(line: string): ControlResponse {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new ShuttleError('INTERNAL', `the daemon answered something that is not JSON: ${line.slice(0, 200)}`);
  }
  const r = raw as Partial<ControlResponse> | null;
  if (r === null || typeof r !== 'object' || r.v !== PROTOCOL_VERSION || typeof r.ok !== 'boolean') {
    throw new ShuttleError('INTERNAL', `the daemon answered in an unknown protocol: ${line.slice(0, 200)}`);
  }
  return r as ControlResponse;
}

/**
 * Splits a byte stream into lines, refusing a line longer than `maxBytes` before it is buffered whole.
 * Bytes are kept as Buffers until a newline so that a UTF-8 character split across chunks survives.
 */
export class LineSplitter {
  #parts: Buffer[] = [];
  #size = 0;

  constructor(private readonly maxBytes: number) {}

  /** The complete lines in `chunk` (without newlines); throws `line-too-long` when a line outgrows the limit. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl);
      this.#check(piece.length);
      this.#parts.push(piece);
      const line = Buffer.concat(this.#parts).toString('utf8');
      this.#parts = [];
      this.#size = 0;
      if (line.trim() !== '') lines.push(line.endsWith('\r') ? line.slice(0, -1) : line);
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.#check(rest.length);
      this.#parts.push(Buffer.from(rest));
      this.#size += rest.length;
    }
    return lines;
  }

  #check(more: number): void {
    if (this.#size + more > this.maxBytes) {
      throw protocolError('line-too-long', `line longer than ${this.maxBytes} bytes`, { limit: this.maxBytes });
    }
  }
}
