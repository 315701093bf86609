import type { FleetAgent } from '../monitor/fleet-status.ts';
import type { PostingState, TransactionRow } from '../store/hub-store.ts';

const esc = (v: unknown): string =>
  String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const ago = (iso: string | null, now: number): string => {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};

/**
 * The fleet page: agents with their health and backlog, posting counts, and the latest transactions with
 * their ERP documents. Server-rendered, refreshes itself, no script needed; every value is escaped.
 */
export function renderDashboard(
  data: { agents: FleetAgent[]; counts: Record<PostingState, number>; transactions: TransactionRow[]; deadLetters: TransactionRow[]; version: string },
  now = Date.now(),
): string {
  const agentRows = data.agents
    .map((a) => {
      const hb = a.heartbeat;
      return `<tr class="${esc(a.status)}" data-agent="${esc(a.id)}">
  <td>${esc(a.id)}</td><td>${esc(a.plants.join(', '))}</td>
  <td><span class="badge ${esc(a.status)}">${esc(a.status)}</span>${a.reasons.length ? `<div class="why">${a.reasons.map(esc).join('<br>')}</div>` : ''}</td>
  <td>${esc(ago(a.lastHeartbeatAt, now))}</td>
  <td class="num">${esc(hb?.outbox.pending ?? '–')}</td><td class="num">${hb ? esc(Math.round(hb.outbox.oldestPendingAgeS)) + ' s' : '–'}</td>
  <td class="num">${esc(hb?.outbox.deadLetters ?? '–')}</td><td>${esc(hb?.drivers.map((d) => `${d.name}: ${d.state}`).join(', ') ?? '–')}</td>
  <td>${esc(hb?.version ?? '')}</td></tr>`;
    })
    .join('\n');
  const txRows = data.transactions
    .map(
      (t) => `<tr class="${esc(t.state)}" data-key="${esc(t.idempotencyKey)}">
  <td><a href="/tx/${encodeURIComponent(t.idempotencyKey)}">${esc(t.eventTime.replace('T', ' ').slice(0, 19))}</a></td><td>${esc(t.plant)}</td><td>${esc(t.workCenter ?? '')}</td><td>${esc(t.type)}</td>
  <td>${esc(t.order)}</td><td class="num">${esc(t.quantity ?? '')} ${esc(t.uom ?? '')}</td>
  <td><span class="badge ${esc(t.state)}">${esc(t.state)}</span>${t.inDoubt && t.state === 'queued' ? ' <span class="badge degraded">in doubt</span>' : ''}</td>
  <td class="erp">${esc(t.erpRef ?? '')}${t.errorMessage ? `<div class="why">${esc(t.errorCode)}: ${esc(t.errorMessage)}</div>` : ''}</td></tr>`,
    )
    .join('\n');
  const deadRows = data.deadLetters
    .map(
      (t) => `<tr data-key="${esc(t.idempotencyKey)}"><td><a href="/tx/${encodeURIComponent(t.idempotencyKey)}">${esc(t.seq)}</a></td><td>${esc(t.plant)}</td>
  <td>${esc(t.order)}</td><td class="num">${esc(t.quantity ?? '')} ${esc(t.uom ?? '')}</td>
  <td>${esc(t.errorCode)}${t.errorCode === 'ERP_IN_DOUBT' ? ' <span class="badge degraded">outcome unknown</span>' : ''}</td><td>${esc(t.errorMessage)}</td><td>${esc(t.attempts)}</td></tr>`,
    )
    .join('\n');
  const c = data.counts;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PlantBridge hub</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2430;background:#f6f7f9}
h1{font-size:1.3rem;margin:0 0 .2rem} h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}
th,td{padding:.35rem .6rem;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.8rem;background:#dde3ea}
.badge.online,.badge.posted{background:#cdeed6;color:#14532d}.badge.degraded,.badge.queued{background:#fdf0c4;color:#713f12}
.badge.offline,.badge.failed,.badge.never-seen{background:#fbd5d5;color:#7f1d1d}
.why{color:#7a4b00;font-size:.8rem}.tiles{display:flex;gap:1rem}.tile{background:#fff;padding:.6rem 1rem;box-shadow:0 1px 2px #0001}
.tile b{display:block;font-size:1.4rem}.muted{color:#6b7280}
</style></head>
<body>
<h1>PlantBridge hub</h1><div class="muted">version ${esc(data.version)} · ${esc(new Date(now).toISOString())} · refreshes every 5 s</div>
<h2>Postings</h2>
<div class="tiles">
<div class="tile" id="count-queued"><b>${esc(c.queued)}</b>queued</div>
<div class="tile" id="count-posted"><b>${esc(c.posted)}</b>posted</div>
<div class="tile" id="count-failed"><b>${esc(c.failed)}</b>dead letters</div>
</div>
<h2>Agents</h2>
<table id="agents"><thead><tr><th>agent</th><th>plants</th><th>status</th><th>last heartbeat</th><th>backlog</th><th>oldest</th><th>dead letters</th><th>drivers</th><th>version</th></tr></thead>
<tbody>${agentRows || '<tr><td colspan="9" class="muted">no agents configured</td></tr>'}</tbody></table>
<h2>Dead letters</h2>
<p class="muted">Refused by the ERP, failed too often, or still in doubt after the last attempt (<code>ERP_IN_DOUBT</code>: the ERP may hold the document; look for it there first and never post it by hand). Each holds back the later postings of its order. Fix the cause, then <code>plantbridge-hub dead-letters replay &lt;seq&gt;</code> (the ERP is checked first, so nothing posts twice), or <code>discard &lt;seq&gt; --reason "…"</code> to let the order go on without it.</p>
<table id="dead-letters"><thead><tr><th>seq</th><th>plant</th><th>order</th><th>quantity</th><th>code</th><th>reason</th><th>attempts</th></tr></thead>
<tbody>${deadRows || '<tr><td colspan="7" class="muted">none</td></tr>'}</tbody></table>
<h2>Recent transactions</h2>
<table id="transactions"><thead><tr><th>event time (UTC)</th><th>plant</th><th>work center</th><th>type</th><th>order</th><th>quantity</th><th>state</th><th>ERP document</th></tr></thead>
<tbody>${txRows || '<tr><td colspan="8" class="muted">nothing received yet</td></tr>'}</tbody></table>
</body></html>`;
}

/**
 * Lineage of one transaction: the machine events it came from, the agent, the hub's acceptance and the
 * ERP document — what an integration team needs to answer "where did this posting come from?".
 */
export function renderTransaction(tx: TransactionRow & { body: { data: Record<string, any>; source: Record<string, unknown>; traceparent: string; observedTime: string } }): string {
  const d = tx.body.data;
  const lineage = d.derivedFrom as { events: number; sourceIds: string[]; firstEventTime: string; lastEventTime: string } | undefined;
  const steps: Array<[string, string]> = [
    ['machine events', lineage ? `${lineage.events} event(s) from ${esc(lineage.firstEventTime)} to ${esc(lineage.lastEventTime)}<br><code>${lineage.sourceIds.map(esc).join('<br>')}</code>${lineage.sourceIds.length < lineage.events ? '<br>(list capped)' : ''}` : '–'],
    ['source', `<code>${esc(JSON.stringify(tx.body.source))}</code>`],
    ['agent', `${esc(tx.agentId)} derived it at ${esc(tx.body.observedTime)}`],
    ['hub', `accepted at ${esc(tx.receivedAt)}; ${esc(tx.attempts)} posting attempt(s)${tx.inDoubt ? (tx.state === 'queued' ? ', in doubt (the next attempt looks the key up first)' : ', in doubt: the ERP may hold it, check there before acting') : ''}`],
    ['ERP', tx.erpRef ? `document <b class="erp">${esc(tx.erpRef)}</b> at ${esc(tx.postedAt)}` : tx.errorCode ? `${esc(tx.errorCode)}: ${esc(tx.errorMessage)}` : 'not yet posted'],
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PlantBridge · ${esc(tx.idempotencyKey)}</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2430}table{border-collapse:collapse}th,td{padding:.4rem .7rem;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:top}
th{width:9rem;background:#eef1f5}code{font-size:.85rem}pre{background:#f6f7f9;padding:.8rem;overflow:auto}</style></head>
<body><p><a href="/">← fleet</a></p>
<h1 style="font-size:1.2rem">${esc(tx.type)} · order ${esc(tx.order)} · <span class="state">${esc(tx.state)}</span></h1>
<p><code>${esc(tx.idempotencyKey)}</code> · trace <code>${esc(tx.body.traceparent)}</code></p>
<table id="lineage">${steps.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join('')}</table>
<h2 style="font-size:1.05rem">Transaction as received</h2><pre>${esc(JSON.stringify(tx.body, null, 2))}</pre>
</body></html>`;
}
