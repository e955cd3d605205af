import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import fastifyCookie from '@fastify/cookie';
import { fastifySSE } from '@fastify/sse';
import fastifyStatic from '@fastify/static';
import fastifySwagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ShuttleError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { PROGRAM_ROOT } from '../../version.js';
import { ApiAuth, wantsHtml } from './auth.js';
import { errorResponse } from './errors.js';
import type { ApiBackend } from './backend.js';
import { registerRoutes, type ZodApp } from './routes.js';
import { EventStream } from './sse.js';

/**
 * The daemon's HTTP server (Fastify): the API under /api/v1/, its OpenAPI document, the event stream,
 * /metrics, the login form and the dashboard's static files (web/, with Preact and htm from
 * node_modules under /vendor/). Started by the daemon when `[api] listen` is set.
 */

export interface ApiServerOptions {
  host: string;
  port: number;
  token: string | undefined;
  backend: ApiBackend;
  logger: Logger;
  /** SSE keep-alive comment interval. */
  heartbeatMs?: number | undefined;
  /** An SSE client whose unsent bytes pass this is cut off. */
  sseMaxBufferBytes?: number | undefined;
  /** The dashboard's files (default: web/ of the program). */
  webRoot?: string | undefined;
}

export class ApiServer {
  private constructor(
    readonly app: ZodApp,
    readonly url: string,
    readonly stream: EventStream,
  ) {}

  static async start(o: ApiServerOptions): Promise<ApiServer> {
    const log = o.logger.child({ component: 'api' });
    const app = Fastify({
      loggerInstance: log as FastifyBaseLogger,
      // Per-request lines would drown the daemon's log; errors are logged by the handler below.
      logController: new LogController({ disableRequestLogging: true }),
      // SSE streams never end by themselves: close() must not wait for them.
      forceCloseConnections: true,
      bodyLimit: 64 * 1024,
    }).withTypeProvider<ZodTypeProvider>();
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
    const stream = new EventStream(o.backend.events, { logger: log, maxBufferBytes: o.sseMaxBufferBytes });
    const auth = new ApiAuth(o.token);

    app.setErrorHandler((err: FastifyError | ShuttleError, req, reply) => {
      const { status, body } = errorResponse(err);
      if (status === 401 && wantsHtml(req)) return reply.redirect(`/login?next=${encodeURIComponent(req.url)}`, 303);
      if (status >= 500) log.error({ err, method: req.method, url: req.url.split('?')[0] }, 'API request failed');
      else log.debug({ code: body.error.code, status, method: req.method, url: req.url.split('?')[0] }, 'API request refused');
      return reply.code(status).send(body);
    });
    app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: { code: 'USAGE', message: `no such resource: ${req.method} ${req.url.split('?')[0]}` } }));
    // The login form posts a form; nothing else takes one.
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 8192 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    });

    await app.register(fastifyCookie);
    app.addHook('onRequest', async (req) => auth.check(req));
    await app.register(fastifySSE, { heartbeatInterval: o.heartbeatMs ?? 15_000 });
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.1.0',
        info: { title: 'Shuttle station API', version: o.backend.version, description: 'A Shuttle daemon: its station state, jobs, files, uploads, events and actions.' },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, session: { type: 'apiKey', in: 'cookie', name: 'shuttle_session' } } },
        security: o.token === undefined ? [] : [{ bearer: [] }, { session: [] }],
      },
      transform: jsonSchemaTransform,
      transformObject: jsonSchemaTransformObject,
    });

    const webRoot = o.webRoot ?? join(PROGRAM_ROOT, 'web');
    if (existsSync(webRoot)) {
      await app.register(fastifyStatic, { root: webRoot, prefix: '/', index: ['index.html'], wildcard: true, serveDotFiles: false });
    } else {
      app.get('/', { schema: { hide: true } }, async (_req, reply) =>
        reply
          .type('text/html; charset=utf-8')
          .send('<!doctype html><title>Shuttle</title><p>The dashboard is not installed here. The API is at <a href="/api/v1/openapi.json">/api/v1/</a>.</p>'),
      );
    }
    for (const pkg of ['preact', 'htm']) {
      const dir = join(PROGRAM_ROOT, 'node_modules', pkg);
      if (existsSync(dir)) await app.register(fastifyStatic, { root: dir, prefix: `/vendor/${pkg}/`, decorateReply: false, serveDotFiles: false });
    }

    registerRoutes(app, { backend: o.backend, auth, stream });
    app.addHook('preClose', async () => stream.close());

    await app.listen({ host: o.host, port: o.port });
    const addr = app.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    const url = `http://${host}:${addr.port}`;
    log.info({ url, auth: o.token === undefined ? 'none (loopback only)' : 'token' }, 'HTTP API listening');
    return new ApiServer(app, url, stream);
  }

  async close(): Promise<void> {
    await this.app.close();
  }
}
