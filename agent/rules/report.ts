import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Transaction } from '../../contracts/index.ts';
import type { Outbox } from '../outbox/outbox.ts';

/**
 * `plantbridge-agent rules report --since <time> [--compare <csv>]`: per order, what the rules posted or
 * would have posted (statuses pending, leased, sent and shadow in the outbox), and — for a safe roll-out
 * beside an existing MES — a comparison with a CSV exported from that MES or the ERP.
 *
 * CSV (first line is the header; `,` `;` or tab separated, detected from the header; quotes allowed;
 * a decimal comma is accepted when the separator is `;` or tab; several rows of one order/operation are
 * summed):
 *
 *   order       required  the production order number
 *   operation   optional  operation number; empty: compared with the order's total over all operations
 *   yield       optional  good quantity
 *   scrap       optional  scrap quantity
 *   rework      optional  rework quantity
 *   uom         optional  unit, informational
 *
 * Header aliases: order_id/orderid/production_order; op/operation_number; good/yield_qty/quantity;
 * scrap_qty; unit.
 */

export interface OrderSummary {
  workCenter?: string;
  order: string;
  operation?: string;
  material?: string;
  uom?: string;
  yield: number;
  scrap: number;
  rework: number;
  final: boolean;
  confirmations: number;
  consumption: Record<string, { qty: number; uom: string }>;
  goodsReceipts: { qty: number; uom?: string };
  /** transactions per outbox status (pending, leased, sent, shadow) */
  statuses: Record<string, number>;
  firstEventTime: string;
  lastEventTime: string;
}

export interface CompareRow {
  order: string;
  operation?: string;
  agent: { yield: number; scrap: number; rework: number } | undefined;
  mes: { yield?: number; scrap?: number; rework?: number };
  diff: { yield?: number; scrap?: number; rework?: number };
  status: 'match' | 'mismatch' | 'missing-in-agent' | 'missing-in-mes';
}

export interface RulesReport {
  since: string;
  generatedAt: string;
  orders: OrderSummary[];
  totals: { transactions: number; shadow: number; pending: number; sent: number };
  comparison?: { tolerance: number; rows: CompareRow[]; matched: number; mismatched: number; missingInAgent: number; missingInMes: number };
}

export interface CsvRow {
  order: string;
  operation?: string;
  yield?: number;
  scrap?: number;
  rework?: number;
  uom?: string;
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(m|h|d)$/;
const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/** An ISO time, a date (plant-agnostic, UTC midnight), or a look-back such as 24h or 7d. */
export function parseSince(since: string | number, now = Date.now()): number {
  if (typeof since === 'number') return since;
  const m = DURATION.exec(since.trim());
  if (m) return now - Number(m[1]) * UNIT_MS[m[2]];
  const t = Date.parse(since);
  if (Number.isNaN(t)) throw new Error(`--since: expected an ISO time (2026-11-27T06:00:00+01:00), a date, or a look-back such as 24h or 7d, got ${JSON.stringify(since)}`);
  return t;
}

const REPORTED = ['pending', 'leased', 'sent', 'shadow'];

export function rulesReport(outbox: Pick<Outbox, 'query'>, opts: { since: string | number; compareCsv?: string; tolerance?: number; now?: number }): RulesReport {
  const now = opts.now ?? Date.now();
  const since = parseSince(opts.since, now);
  const orders = new Map<string, OrderSummary>();
  const totals = { transactions: 0, shadow: 0, pending: 0, sent: 0 };
  let after = 0;
  for (;;) {
    const rows = outbox.query<{ seq: number; status: string; body: string }>(
      `SELECT seq, status, body FROM transactions_json WHERE seq > ? AND created_at >= ? AND status IN (${REPORTED.map(() => '?').join(', ')}) ORDER BY seq LIMIT 5000`,
      after,
      since,
      ...REPORTED,
    );
    if (rows.length === 0) break;
    for (const row of rows) {
      after = row.seq;
      const tx = JSON.parse(row.body) as Transaction;
      const d = tx.data as Record<string, any>;
      const key = `${tx.workCenter ?? ''}\u0000${d.order}\u0000${d.operation ?? ''}`;
      let o = orders.get(key);
      if (!o) {
        o = {
          ...(tx.workCenter ? { workCenter: tx.workCenter } : {}),
          order: d.order,
          ...(d.operation ? { operation: d.operation } : {}),
          yield: 0,
          scrap: 0,
          rework: 0,
          final: false,
          confirmations: 0,
          consumption: {},
          goodsReceipts: { qty: 0 },
          statuses: {},
          firstEventTime: tx.eventTime,
          lastEventTime: tx.eventTime,
        };
        orders.set(key, o);
      }
      totals.transactions++;
      if (row.status === 'shadow') totals.shadow++;
      else if (row.status === 'sent') totals.sent++;
      else totals.pending++;
      o.statuses[row.status] = (o.statuses[row.status] ?? 0) + 1;
      if (Date.parse(tx.eventTime) < Date.parse(o.firstEventTime)) o.firstEventTime = tx.eventTime;
      if (Date.parse(tx.eventTime) > Date.parse(o.lastEventTime)) o.lastEventTime = tx.eventTime;
      if (tx.schema.includes('production-confirmation')) {
        o.confirmations++;
        o.yield += d.yield.qty;
        o.scrap += d.scrap?.qty ?? 0;
        o.rework += d.rework?.qty ?? 0;
        o.uom ??= d.yield.uom;
        if (d.material) o.material ??= d.material;
        if (d.final === 'final') o.final = true;
      } else if (tx.schema.includes('material-consumption')) {
        const c = (o.consumption[d.material] ??= { qty: 0, uom: d.quantity.uom });
        c.qty += d.movement === 'reversal' ? -d.quantity.qty : d.quantity.qty;
      } else if (tx.schema.includes('goods-receipt')) {
        o.goodsReceipts.qty += d.quantity.qty;
        o.goodsReceipts.uom ??= d.quantity.uom;
      }
    }
  }
  const round = (n: number) => Math.round(n * 1e6) / 1e6;
  for (const o of orders.values()) {
    o.yield = round(o.yield);
    o.scrap = round(o.scrap);
    o.rework = round(o.rework);
    for (const c of Object.values(o.consumption)) c.qty = round(c.qty);
  }
  const list = [...orders.values()].sort((a, b) => (a.workCenter ?? '').localeCompare(b.workCenter ?? '') || a.order.localeCompare(b.order) || (a.operation ?? '').localeCompare(b.operation ?? ''));
  const report: RulesReport = { since: new Date(since).toISOString(), generatedAt: new Date(now).toISOString(), orders: list, totals };
  if (opts.compareCsv !== undefined) report.comparison = compare(list, parseCompareCsv(opts.compareCsv), opts.tolerance ?? 0);
  return report;
}

function splitLine(line: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === sep) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((s) => s.trim());
}

const ALIASES: Record<string, keyof CsvRow> = {
  order: 'order',
  orderid: 'order',
  order_id: 'order',
  productionorder: 'order',
  production_order: 'order',
  operation: 'operation',
  op: 'operation',
  operation_number: 'operation',
  operationnumber: 'operation',
  yield: 'yield',
  good: 'yield',
  yield_qty: 'yield',
  yieldqty: 'yield',
  quantity: 'yield',
  scrap: 'scrap',
  scrap_qty: 'scrap',
  scrapqty: 'scrap',
  rework: 'rework',
  uom: 'uom',
  unit: 'uom',
};

/** Parses the MES / ERP export (columns above). Throws with the line number on a malformed row. */
export function parseCompareCsv(text: string): CsvRow[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 0) throw new Error('compare CSV: empty file (expected a header line with at least an "order" column)');
  const head = lines[0];
  const sep = [';', '\t', ','].map((s) => [s, head.split(s).length] as const).sort((a, b) => b[1] - a[1])[0][0];
  const cols = splitLine(head, sep).map((h) => ALIASES[h.toLowerCase().replace(/\s+/g, '_')]);
  if (!cols.includes('order')) throw new Error(`compare CSV: the header needs an "order" column (got: ${head})`);
  const num = (s: string, line: number, col: string): number | undefined => {
    if (s === '') return undefined;
    const norm = sep !== ',' ? s.replace(/\.(?=\d{3}(\D|$))/g, '').replace(',', '.') : s;
    const n = Number(norm);
    if (!Number.isFinite(n)) throw new Error(`compare CSV line ${line}: ${col} "${s}" is not a number`);
    return n;
  };
  const rows: CsvRow[] = [];
  lines.slice(1).forEach((l, i) => {
    const cells = splitLine(l, sep);
    const row: Partial<CsvRow> = {};
    cols.forEach((c, k) => {
      const v = cells[k] ?? '';
      if (!c) return;
      if (c === 'order' || c === 'operation' || c === 'uom') {
        if (v !== '') row[c] = v;
      } else {
        const n = num(v, i + 2, c);
        if (n !== undefined) row[c] = (row[c] ?? 0) + n;
      }
    });
    if (!row.order) throw new Error(`compare CSV line ${i + 2}: no order`);
    rows.push(row as CsvRow);
  });
  return rows;
}

function compare(orders: OrderSummary[], csv: CsvRow[], tolerance: number): NonNullable<RulesReport['comparison']> {
  type Tot = { yield: number; scrap: number; rework: number };
  const agent = new Map<string, Tot>();
  const add = (k: string, o: OrderSummary) => {
    const t = agent.get(k) ?? { yield: 0, scrap: 0, rework: 0 };
    agent.set(k, { yield: t.yield + o.yield, scrap: t.scrap + o.scrap, rework: t.rework + o.rework });
  };
  for (const o of orders) {
    add(`${o.order}\u0000${o.operation ?? ''}`, o);
    add(`${o.order}\u0000*`, o);
  }
  const mes = new Map<string, CsvRow>();
  for (const r of csv) {
    const k = `${r.order}\u0000${r.operation ?? '*'}`;
    const m = mes.get(k) ?? { order: r.order, ...(r.operation ? { operation: r.operation } : {}) };
    for (const f of ['yield', 'scrap', 'rework'] as const) if (r[f] !== undefined) m[f] = (m[f] ?? 0) + r[f];
    mes.set(k, m);
  }
  const rows: CompareRow[] = [];
  const round = (n: number) => Math.round(n * 1e6) / 1e6;
  for (const [k, m] of mes) {
    const a = agent.get(k);
    const diff: CompareRow['diff'] = {};
    let mismatch = false;
    for (const f of ['yield', 'scrap', 'rework'] as const) {
      if (m[f] === undefined) continue;
      diff[f] = round((a?.[f] ?? 0) - m[f]);
      if (Math.abs(diff[f]) > tolerance) mismatch = true;
    }
    rows.push({
      order: m.order,
      ...(m.operation ? { operation: m.operation } : {}),
      agent: a,
      mes: { ...(m.yield !== undefined ? { yield: m.yield } : {}), ...(m.scrap !== undefined ? { scrap: m.scrap } : {}), ...(m.rework !== undefined ? { rework: m.rework } : {}) },
      diff,
      status: !a ? 'missing-in-agent' : mismatch ? 'mismatch' : 'match',
    });
  }
  const mesOrders = new Set(csv.map((r) => r.order));
  for (const o of orders) {
    if (mesOrders.has(o.order)) continue;
    rows.push({ order: o.order, ...(o.operation ? { operation: o.operation } : {}), agent: { yield: o.yield, scrap: o.scrap, rework: o.rework }, mes: {}, diff: {}, status: 'missing-in-mes' });
  }
  rows.sort((x, y) => x.order.localeCompare(y.order) || (x.operation ?? '').localeCompare(y.operation ?? ''));
  const count = (s: CompareRow['status']) => rows.filter((r) => r.status === s).length;
  return { tolerance, rows, matched: count('match'), mismatched: count('mismatch'), missingInAgent: count('missing-in-agent'), missingInMes: count('missing-in-mes') };
}

/** Plain-text rendering for the terminal. */
export function formatRulesReport(r: RulesReport): string {
  const out: string[] = [];
  out.push(`Rules report since ${r.since} (generated ${r.generatedAt})`);
  out.push(`${r.totals.transactions} transaction(s): ${r.totals.sent} sent, ${r.totals.pending} pending, ${r.totals.shadow} shadow (derived, never forwarded)`);
  out.push('');
  out.push(['work center', 'order', 'op', 'material', 'yield', 'scrap', 'rework', 'uom', 'final', 'conf', 'consumption', 'status'].join('\t'));
  for (const o of r.orders) {
    const cons = Object.entries(o.consumption).map(([m, c]) => `${m} ${c.qty} ${c.uom}`).join(', ');
    const st = Object.entries(o.statuses).map(([s, n]) => `${s} ${n}`).join(', ');
    out.push([o.workCenter ?? '', o.order, o.operation ?? '', o.material ?? '', o.yield, o.scrap, o.rework, o.uom ?? '', o.final ? 'yes' : '', o.confirmations, cons, st].join('\t'));
  }
  if (r.comparison) {
    const c = r.comparison;
    out.push('');
    out.push(`Comparison with the MES/ERP export (tolerance ${c.tolerance}): ${c.matched} match, ${c.mismatched} mismatch, ${c.missingInAgent} missing in agent, ${c.missingInMes} missing in MES`);
    out.push(['order', 'op', 'agent yield', 'mes yield', 'diff', 'agent scrap', 'mes scrap', 'diff', 'status'].join('\t'));
    for (const row of c.rows) {
      out.push([row.order, row.operation ?? '*', row.agent?.yield ?? '', row.mes.yield ?? '', row.diff.yield ?? '', row.agent?.scrap ?? '', row.mes.scrap ?? '', row.diff.scrap ?? '', row.status].join('\t'));
    }
  }
  return `${out.join('\n')}\n`;
}

/**
 * The CLI command body: opens the outbox beside the running agent (WAL: reads never block it), prints the
 * report (text, or JSON with json: true). Exit code 0 (differences are in the report, not the exit code),
 * 1 for a usage error (no --since, unreadable or malformed CSV).
 */
export async function rulesReportCommand(
  config: { agent: { stateDir: string } },
  opts: { since?: string; compare?: string; tolerance?: number; json?: boolean },
  write: (s: string) => void = (s) => void process.stdout.write(s),
  writeError: (s: string) => void = (s) => void process.stderr.write(s),
): Promise<number> {
  if (!opts.since) {
    writeError('rules report: --since <time> is needed (an ISO time, or a look-back such as 24h or 7d)\n');
    return 1;
  }
  let csv: string | undefined;
  try {
    parseSince(opts.since);
    csv = opts.compare ? readFileSync(opts.compare, 'utf8') : undefined;
    if (csv !== undefined) parseCompareCsv(csv);
  } catch (err) {
    writeError(`rules report: ${(err as Error).message}\n`);
    return 1;
  }
  const { openOutbox } = await import('../outbox/outbox.ts');
  // a tool beside the running agent: no checks, timers or quarantine of its file, reads only
  const outbox = openOutbox({ path: join(config.agent.stateDir, 'outbox.db'), role: 'tool', maxBytes: Infinity, minFreeDiskBytes: 0 });
  try {
    const report = rulesReport(outbox, { since: opts.since, ...(csv !== undefined ? { compareCsv: csv } : {}), ...(opts.tolerance !== undefined ? { tolerance: opts.tolerance } : {}) });
    write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatRulesReport(report));
    return 0;
  } finally {
    outbox.close();
  }
}
