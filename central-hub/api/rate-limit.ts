import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { PlantBridgeError } from '../../contracts/index.ts';

/** Buckets kept per limiter before full ones are dropped (an idle key's bucket is full: forgetting it changes nothing). */
const MAX_KEYS = 10_000;

/** A token bucket per key: `rate` requests per second, bursts up to 2x. Monotonic clock. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly rate: number;
  private readonly burst: number;
  constructor(ratePerS: number) {
    this.rate = ratePerS;
    this.burst = Math.max(1, ratePerS * 2);
  }
  /** 0 when allowed, else milliseconds until the next request would be */
  take(key: string, now = performance.now()): number {
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    if (!this.buckets.has(key)) {
      if (this.buckets.size >= MAX_KEYS) this.prune(now);
      this.buckets.set(key, b);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / this.rate) * 1000);
  }
  /** how many keys are tracked (tests) */
  get size(): number {
    return this.buckets.size;
  }
  private prune(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
    // still full of busy keys (a flood from many addresses): the oldest go; they start again with a full bucket
    if (this.buckets.size >= MAX_KEYS) {
      let n = this.buckets.size - MAX_KEYS / 2;
      for (const k of this.buckets.keys()) {
        if (n-- <= 0) break;
        this.buckets.delete(k);
      }
    }
  }
}

/** Requests per second (burst 2x) a route allows per client address and per authenticated caller. */
export interface RouteRateLimit {
  /** per client address, checked first, before authentication and before the body is read */
  perAddress?: number;
  /** per agent (bearer credential) or console principal, checked right after authentication */
  perCaller?: number;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** this route's rate limits (central-hub/api/rate-limit.ts); absent = ROUTE_RATE_LIMIT_DEFAULT */
    rateLimit?: RouteRateLimit;
  }
}

/**
 * Every route's limits unless it declares its own in `config.rateLimit`: generous for a person or a
 * dashboard, small for anything a flood could cost (a store query, an audit row, a session lookup).
 */
export const ROUTE_RATE_LIMIT_DEFAULT: Required<RouteRateLimit> = { perAddress: 50, perCaller: 20 };

export interface RateLimitOptions {
  /** counts refusals: route (the route's URL pattern) and by (address | caller) */
  onLimited?: (route: string, by: 'address' | 'caller') => void;
  /** the clock (tests); default performance.now */
  now?: () => number;
}

/**
 * Rate limits on EVERY route, including routes other modules add later (issue #22): register this before
 * any route and before any other onRequest hook (buildHub does). Two checks per request:
 *
 * 1. per client address: an onRequest hook of the whole app, so it runs before every other hook, before
 *    authentication and before the body is read (a refused request costs a map lookup). Unknown URLs share
 *    one limit per address, so a scan of 404s is limited too.
 * 2. per caller: an onRoute hook appends a check to each route's own onRequest hooks, so it runs after
 *    the route's authentication (requireAgent sets req.agent; the console's hook sets req.principal). A
 *    route without a caller (open routes such as /healthz, /v1/enroll) has only the address limit.
 *
 * A route declares its own limits with `{ config: { rateLimit: { perAddress, perCaller } } }`; anything it
 * leaves out is ROUTE_RATE_LIMIT_DEFAULT. A refusal is 429 RATE_LIMITED with Retry-After (whole seconds).
 * docs/SECURITY.md lists each route's limits.
 */
export function rateLimitEveryRoute(app: FastifyInstance, opts: RateLimitOptions = {}): void {
  const now = opts.now ?? (() => performance.now());
  const byRoute = new Map<string, { address: RateLimiter; caller: RateLimiter }>();
  const limitersOf = (method: string, url: string, own: RouteRateLimit | undefined) => {
    const id = `${method} ${url}`;
    let l = byRoute.get(id);
    if (!l) {
      l = { address: new RateLimiter(own?.perAddress ?? ROUTE_RATE_LIMIT_DEFAULT.perAddress), caller: new RateLimiter(own?.perCaller ?? ROUTE_RATE_LIMIT_DEFAULT.perCaller) };
      byRoute.set(id, l);
    }
    return l;
  };
  const refuse = (req: FastifyRequest, reply: FastifyReply, wait: number, route: string, by: 'address' | 'caller', who: string): never => {
    const s = Math.max(1, Math.ceil(wait / 1000));
    reply.header('retry-after', String(s));
    opts.onLimited?.(route, by);
    throw new PlantBridgeError('RATE_LIMITED', `too many requests to ${route} from ${who}; retry after ${s} s`, { correlationId: req.id });
  };

  app.addHook('onRequest', async (req, reply) => {
    const ro = req.routeOptions;
    // no route matched: one shared limit per address for every unknown URL
    const url = ro.url ?? '(no route)';
    const method = ro.url ? String(ro.method) : '*';
    const l = limitersOf(method, url, ro.config?.rateLimit);
    const wait = l.address.take(req.ip, now());
    if (wait > 0) refuse(req, reply, wait, url, 'address', `address ${req.ip}`);
  });

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const own = (route.config as { rateLimit?: RouteRateLimit } | undefined)?.rateLimit;
    const perCaller: onRequestHookHandler = function (req, reply, done) {
      const who = req.agent ? `agent ${req.agent.id}` : req.principal ? `${req.principal.kind} ${req.principal.name}` : undefined;
      if (who) {
        const wait = limitersOf(String(req.routeOptions.method), route.url, own).caller.take(who, now());
        if (wait > 0) {
          try {
            refuse(req, reply, wait, route.url, 'caller', who);
          } catch (err) {
            return done(err as Error);
          }
        }
      }
      done();
    };
    // the route's limiters exist from registration, so the address hook finds them by the same id
    for (const m of methods) limitersOf(String(m), route.url, own);
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.onRequest = [...existing, perCaller];
  });
}
