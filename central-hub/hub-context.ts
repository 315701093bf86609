import type { Logger } from 'pino';
import type { HubConfig } from './config/schema.ts';
import type { ErpAdapter } from './erp/erp-adapter.ts';
import type { HubMetricsSet } from './metrics.ts';
import type { Reconciler } from './monitor/reconciliation.ts';
import type { ReleasedOrdersWatch } from './monitor/released-orders.ts';
import type { SlaEngine } from './monitor/sla-engine.ts';
import type { HubStore } from './store/hub-store.ts';

/**
 * What the route modules (api/, dashboard/) are given when buildHub registers them. Routes are registered
 * at build, before anything is opened; the store is opened by `Hub.open()` (or `start()`), so a route
 * reads `ctx.store` per request, never at registration.
 */
export interface HubContext {
  readonly config: HubConfig;
  readonly log: Logger;
  readonly metrics: HubMetricsSet;
  readonly adapter: ErpAdapter;
  /** the open store; reading it before `Hub.open()` throws INTERNAL "hub not open" */
  readonly store: HubStore;
  /** when agents count as offline, and how old a backlog may get (monitor/fleet-status.ts) */
  readonly fleet: { offlineAfterMs: number; backlogSlaMs: number };
  /** business monitoring (monitor/, issue #20): the SLA checks, run every monitor.interval after start() */
  readonly monitor: { readonly sla: SlaEngine; readonly released: ReleasedOrdersWatch; readonly reconciler: Reconciler };
  /** ingest stored new transactions: wakes the posting service, if it runs */
  notifyAccepted(): void;
}
