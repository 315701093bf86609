import type { AgentStatusRow } from '../store/hub-store.ts';

export type FleetStatus = 'online' | 'degraded' | 'offline' | 'never-seen';

export interface FleetAgent extends AgentStatusRow {
  status: FleetStatus;
  reasons: string[];
}

/**
 * online: heartbeats arriving and nothing wrong. degraded: a driver not up, a backlog older than its SLA,
 * open dead letters, the outbox full, or an alarm. offline: no heartbeat for `offlineAfterMs` (3 missed).
 */
export function fleetStatus(row: AgentStatusRow, opts: { offlineAfterMs: number; backlogSlaMs: number }, now = Date.now()): FleetAgent {
  if (!row.lastHeartbeatAt || !row.heartbeat) return { ...row, status: 'never-seen', reasons: ['no heartbeat received yet'] };
  const age = now - Date.parse(row.lastHeartbeatAt);
  if (age > opts.offlineAfterMs) return { ...row, status: 'offline', reasons: [`last heartbeat ${Math.round(age / 1000)} s ago`] };
  const hb = row.heartbeat;
  const reasons: string[] = [];
  for (const d of hb.drivers) if (d.state !== 'up') reasons.push(`driver ${d.name} is ${d.state}${d.message ? `: ${d.message}` : ''}`);
  if (hb.outbox.oldestPendingAgeS * 1000 > opts.backlogSlaMs) reasons.push(`backlog ${Math.round(hb.outbox.oldestPendingAgeS)} s old (SLA ${opts.backlogSlaMs / 1000} s)`);
  if (hb.outbox.deadLetters > 0) reasons.push(`${hb.outbox.deadLetters} dead letter(s) on the agent`);
  if (hb.outbox.full) reasons.push('outbox full: sources are not acknowledged');
  for (const a of hb.alarms) reasons.push(`${a.code}: ${a.message}`);
  return { ...row, status: reasons.length ? 'degraded' : 'online', reasons };
}
