/**
 * `npm run chaos -- <scenario…|all> [--short] [--keep]`: runs chaos scenarios against the whole path
 * (machines -> agent -> hub -> ERP simulator) and ends each with the ledger (ledger.ts).
 *
 * stdout: one JSON object per scenario (JSON lines); stderr: progress and, at the end, a summary table.
 * Exit code 0 only if every scenario passed its ledger and its own checks. Scratch directories are
 * removed after a pass and kept after a failure (or always with --keep), with both processes' logs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { r1 } from './r1-agent-sigkill.ts';
import { r2 } from './r2-hub-sigkill.ts';
import { r3 } from './r3-power-loss.ts';
import { r4 } from './r4-hub-unreachable.ts';
import { r5 } from './r5-outbox-cap.ts';
import { r6 } from './r6-enospc.ts';
import { r9 } from './r9-erp-errors.ts';
import { r11 } from './r11-clock-jumps.ts';
import { r12 } from './r12-partitions.ts';
import { r13 } from './r13-hub-sigstop.ts';
import { r14 } from './r14-slow-hub.ts';
import { r15 } from './r15-soak.ts';
import { liveChildren } from './rig.ts';
import type { Scenario, ScenarioResult } from './scenario.ts';

export const SCENARIOS: Scenario[] = [r1, r2, r3, r4, r5, r6, r9, r11, r12, r13, r14, r15];

interface Line {
  scenario: string;
  title: string;
  fault: string;
  load: string;
  short: boolean;
  passed: boolean;
  durationS: number;
  lost: number | null;
  duplicated: number | null;
  misattributed: number | null;
  wrongOrder: number | null;
  unsettled: number | null;
  metrics: Record<string, number>;
  checks: ScenarioResult['checks'];
  findings: string[];
  skipped?: string;
  error?: string;
  date: string;
  dir?: string;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({ options: { short: { type: 'boolean' }, keep: { type: 'boolean' }, help: { type: 'boolean' } }, allowPositionals: true });
  const ids = positionals.flatMap((p) => (p === 'all' ? SCENARIOS.map((s) => s.id) : [p.toLowerCase()]));
  if (values.help || ids.length === 0) {
    process.stderr.write(`usage: npm run chaos -- <scenario…|all> [--short] [--keep]\nscenarios:\n${SCENARIOS.map((s) => `  ${s.id.padEnd(4)} ${s.title}`).join('\n')}\n`);
    return values.help ? 0 : 2;
  }
  const unknown = ids.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length) {
    process.stderr.write(`unknown scenario(s): ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(', ')}\n`);
    return 2;
  }
  const short = values.short === true;
  const lines: Line[] = [];
  for (const id of ids) {
    const s = SCENARIOS.find((x) => x.id === id)!;
    const dir = mkdtempSync(join(tmpdir(), `pb-chaos-${id}-`));
    const t0 = Date.now();
    process.stderr.write(`${id}: ${s.title} (${s.load(short)}) in ${dir}\n`);
    let result: ScenarioResult | undefined;
    let error: string | undefined;
    try {
      result = await s.run({ short, dir, progress: (l) => process.stderr.write(`  ${l}\n`) });
    } catch (e) {
      error = e instanceof Error ? (e.stack ?? e.message) : String(e);
    }
    const l = result?.ledger;
    const passed = !error && !result?.skipped && (l?.ok ?? true) && (result?.checks ?? []).every((c) => c.ok);
    const line: Line = {
      scenario: id,
      title: s.title,
      fault: s.fault,
      load: s.load(short),
      short,
      passed,
      durationS: Math.round((Date.now() - t0) / 100) / 10,
      lost: l ? l.lostQty : null,
      duplicated: l ? l.duplicatedDocuments + l.surplusQty : null,
      misattributed: l ? l.misattributed : null,
      wrongOrder: l ? l.wrongOrder : null,
      unsettled: l ? l.unsettled : null,
      metrics: { ...(l ? { producedQty: l.producedQty, erpQty: l.erpQty, erpDocuments: l.erpDocuments, orders: l.orders } : {}), ...result?.metrics },
      checks: result?.checks ?? [],
      findings: (l?.findings ?? []).slice(0, 20).map((f) => `${f.kind}${f.order ? ` order ${f.order}` : ''}${f.key ? ` ${f.key}` : ''}: ${f.detail}`),
      ...(result?.skipped ? { skipped: result.skipped } : {}),
      ...(error ? { error } : {}),
      date: new Date().toISOString(),
    };
    if (!passed || values.keep) line.dir = dir;
    else rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    lines.push(line);
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
  process.stderr.write(`\n${table(lines)}\n`);
  return lines.every((l) => l.passed) ? 0 : 1;
}

function table(lines: Line[]): string {
  const head = ['scenario', 'load', 'result', 'lost', 'dup', 'misattr', 'wrong-order', 'unsettled', 'time s', 'notes'];
  const rows = lines.map((l) => [
    l.scenario,
    l.load,
    l.skipped ? 'SKIPPED' : l.passed ? 'pass' : 'FAIL',
    String(l.lost ?? '-'),
    String(l.duplicated ?? '-'),
    String(l.misattributed ?? '-'),
    String(l.wrongOrder ?? '-'),
    String(l.unsettled ?? '-'),
    String(l.durationS),
    l.skipped ?? l.error?.split('\n')[0] ?? l.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.seen}`).join('; ') ?? '',
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(width[i])).join('  ').trimEnd();
  return [fmt(head), fmt(width.map((w) => '-'.repeat(w))), ...rows.map(fmt)].join('\n');
}

// an interrupted run leaves no hub, agent or broker behind
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const c of liveChildren) c.kill('SIGKILL');
    process.exit(130);
  });
}

process.exitCode = await main();
