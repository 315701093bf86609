import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openOutbox } from './outbox.ts';
import { countingDeriver, signal } from './test-kit.ts';

/**
 * The forwarding path must cost the same at any backlog (DESIGN.md §3): no statement of claim, lease or
 * settle may walk the pending rows. A regression once made every claim scan the whole backlog through the
 * status index (the "delayed orders" half of the query); these plans are checked on both SQLite drivers.
 */
for (const driver of ['better-sqlite3', 'node:sqlite'] as const) {
  void describe(`outbox query plans (${driver})`, () => {
    void it('claim, lease and settle use keyed lookups only, never a scan of the backlog', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'pb-plans-'));
      const o = openOutbox({ path: join(dir, 'outbox.db'), driver, rules: countingDeriver(1) });
      try {
        await o.append(Array.from({ length: 50 }, (_, i) => signal(i)));
        const plans = o.queryPlans();
        for (const [name, plan] of Object.entries(plans)) {
          // a scan of the partial index of delayed items is fine: it holds only items waiting for a retry
          for (const step of plan) if (!step.includes('transactions_delayed')) assert.doesNotMatch(step, /^SCAN transactions/, `${name}: ${plan.join(' | ')}`);
        }
        // the delayed half of blockedOrders goes through the partial index of delayed items only
        assert.ok(plans.blockedOrders.some((s) => s.includes('transactions_delayed')), plans.blockedOrders.join(' | '));
        // a claim walks the pending index up to its horizon, skipping blocked orders inside SQLite
        assert.ok(plans.claimScan.some((s) => /transactions_pending \(seq>\? AND seq<\?\)/.test(s)), plans.claimScan.join(' | '));
        assert.ok(plans.claimHorizon.some((s) => /COVERING INDEX transactions_pending/.test(s)), plans.claimHorizon.join(' | '));
        // settling drives from the settled items to their rows by primary key
        assert.ok(plans.settleSentMany.some((s) => /INTEGER PRIMARY KEY/.test(s)), plans.settleSentMany.join(' | '));
      } finally {
        o.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
