import type { FastifyRequest } from 'fastify';

/**
 * The contract between the routes that show fleet and business data (api/fleet.ts, monitor/, console/)
 * and the console's authentication (issue #21), so that each can be built in any order.
 *
 * - A route that needs a signed-in user or an API token declares the least role it needs in its route
 *   options: `app.get(url, { config: { access: 'viewer' } }, handler)`. Roles rank viewer < operator < admin.
 *   State-changing routes (retry a dead letter, acknowledge an alert) declare 'operator' or 'admin'.
 * - The console's one onRequest hook (registered in buildHub) enforces `config.access`: no principal →
 *   401, too low a role → 403, and sets `req.principal`. Routes without `config.access` are the agents'
 *   own (bearer token of an agent) or open (/healthz).
 * - A principal limited to plants sees only those: a route filters what it returns with
 *   `visiblePlants(req)` (null = every plant) and answers 404 for a single object of another plant, as
 *   if it did not exist.
 */
export type Role = 'viewer' | 'operator' | 'admin';

export interface Principal {
  kind: 'user' | 'token';
  /** user name, or the API token's name */
  name: string;
  role: Role;
  /** plants this principal may see; null = every plant */
  plants: readonly string[] | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** the least role a route needs (see central-hub/api/access.ts) */
    access?: Role;
  }
}

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function roleAtLeast(have: Role, need: Role): boolean {
  return RANK[have] >= RANK[need];
}

/** the plants the request's principal may see; null = every plant (also before the console's hook exists) */
export function visiblePlants(req: FastifyRequest): readonly string[] | null {
  return req.principal?.plants ?? null;
}

/** true when the request may see data of `plant` */
export function maySeePlant(req: FastifyRequest, plant: string): boolean {
  const plants = visiblePlants(req);
  return plants === null || plants.includes(plant);
}
