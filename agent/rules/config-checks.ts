import type { z } from 'zod';
import type { CountProductionConfig } from './count-production/config.ts';
import type { MapEventConfig } from './map-event/config.ts';

/**
 * Cross-checks of the rules against the drivers and against each other, run by the agent config's
 * superRefine: every source a rule reads exists (and, where the driver lists its refs, the ref too); two
 * rules never derive the same keys; consumption is never posted twice (per unit and from events, or
 * explicitly while the ERP backflushes).
 */

type RuleCfg = (CountProductionConfig | MapEventConfig) & { type: string };
interface DriverLike {
  name: string;
  type: string;
  nodes?: Array<{ ref: string }>;
  subscriptions?: Array<{ ref: string }>;
  groups?: string[];
}

/** An MQTT ref template ("{machine}/cycle") as a matcher for concrete refs ("m1/cycle"). */
function templateMatcher(template: string): RegExp {
  const parts = template.split(/\{[A-Za-z0-9_-]+\}/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('[^/]+')}$`);
}

function refsOf(r: RuleCfg): Array<[Array<string | number>, { source: string; ref: string }]> {
  const out: Array<[Array<string | number>, { source: string; ref: string }]> = [];
  if (r.type === 'count-production') {
    const c = r as CountProductionConfig;
    out.push([['counter'], c.counter]);
    if (c.scrapCounter) out.push([['scrapCounter'], c.scrapCounter]);
    if (c.reworkCounter) out.push([['reworkCounter'], c.reworkCounter]);
    if ('source' in c.activeOrder) out.push([['activeOrder'], c.activeOrder]);
    if (c.final) out.push([['final'], c.final]);
  } else if (r.type === 'map-event') {
    const m = r as MapEventConfig;
    m.inputs.forEach((i, k) => out.push([['inputs', k], i]));
    if (m.activeOrder && 'source' in m.activeOrder) out.push([['activeOrder'], m.activeOrder]);
  }
  return out;
}

export function checkRuleReferences(c: { drivers: DriverLike[]; rules: RuleCfg[] }, ctx: z.RefinementCtx): void {
  const drivers = new Map(c.drivers.map((d) => [d.name, d]));
  const ids = new Set<string>();
  const counters = new Map<string, number>();
  const eventKeys = new Map<string, number>();
  const payloadIdScopes = new Map<string, number>();
  c.rules.forEach((r, i) => {
    if (ids.has(r.id)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id "${r.id}"` });
    ids.add(r.id);
    for (const [path, ref] of refsOf(r)) {
      const d = drivers.get(ref.source);
      if (!d) {
        ctx.addIssue({ code: 'custom', path: ['rules', i, ...path, 'source'], message: `no driver named "${ref.source}" (drivers: ${[...drivers.keys()].join(', ')})` });
      } else if (d.type === 'opcua' && d.nodes && !d.nodes.some((n) => n.ref === ref.ref)) {
        ctx.addIssue({
          code: 'custom',
          path: ['rules', i, ...path, 'ref'],
          message: `driver "${d.name}" has no node with ref "${ref.ref}" (refs: ${d.nodes.map((n) => n.ref).join(', ')})`,
        });
      } else if (d.type === 'mqtt' && d.subscriptions && !d.subscriptions.some((s) => templateMatcher(s.ref).test(ref.ref))) {
        ctx.addIssue({
          code: 'custom',
          path: ['rules', i, ...path, 'ref'],
          message: `no subscription of driver "${d.name}" produces ref "${ref.ref}" (subscription refs: ${d.subscriptions.map((s) => s.ref).join(', ')})`,
        });
      } else if (d.type === 'sparkplug' && d.groups && !d.groups.includes('+') && !d.groups.includes(ref.ref.split('/')[0])) {
        ctx.addIssue({
          code: 'custom',
          path: ['rules', i, ...path, 'ref'],
          message: `driver "${d.name}" reads groups ${d.groups.join(', ')}; Sparkplug refs are <group>/<edge node>/[<device>/]<metric>, and "${ref.ref}" is in none of them`,
        });
      }
    }
    if (r.type === 'count-production') {
      const cp = r as CountProductionConfig;
      // the key is plant:workCenter:order:operation:counter:from-to — two rules on one counter would collide
      const k = `${cp.workCenter}\u0000${cp.counter.source}\u0000${cp.counter.ref}`;
      const other = counters.get(k);
      if (other !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['rules', i, 'counter'], message: `rule "${c.rules[other].id}" already counts ${cp.counter.source}/${cp.counter.ref} for ${cp.workCenter}: their keys would collide` });
      } else counters.set(k, i);
    } else if (r.type === 'map-event') {
      const me = r as MapEventConfig;
      for (const input of me.inputs) {
        const k = `${input.source}\u0000${input.ref}\u0000${me.keySuffix ?? ''}`;
        const other = eventKeys.get(k);
        if (other !== undefined && other !== i) {
          ctx.addIssue({
            code: 'custom',
            path: ['rules', i, 'keySuffix'],
            message: `rule "${c.rules[other].id}" also maps ${input.source}/${input.ref}: give the two rules different keySuffix values, or their keys would collide`,
          });
        } else eventKeys.set(k, i);
      }
      // ids from the payload: keys are plant:source:eventId per rule, so two rules reading one source with
      // payload ids must differ in keySuffix (robot1's and robot2's eventId 42 would be one key)
      if (me.eventId) {
        for (const source of new Set(me.inputs.map((x) => x.source))) {
          const k = `${source}\u0000${me.keySuffix ?? ''}`;
          const other = payloadIdScopes.get(k);
          if (other !== undefined && other !== i) {
            ctx.addIssue({
              code: 'custom',
              path: ['rules', i, 'keySuffix'],
              message: `rule "${c.rules[other].id}" also maps events of ${source} with ids picked from the payload: give the two rules different keySuffix values, or events of both with the same id would share a key and one would be dropped`,
            });
          } else payloadIdScopes.set(k, i);
        }
      }
    }
  });

  // consumption is posted once: per unit, or from events, or by the ERP's backflush — never two of these
  const consumingEvents = new Map<string, number>();
  c.rules.forEach((r, i) => {
    if (r.type === 'map-event' && (r as MapEventConfig).emit === 'material-consumption' && r.workCenter) consumingEvents.set(r.workCenter, i);
  });
  c.rules.forEach((r, i) => {
    if (r.type !== 'count-production') return;
    const cp = r as CountProductionConfig;
    const ev = consumingEvents.get(cp.workCenter);
    if (ev === undefined) return;
    const mode = cp.consumption?.mode;
    if (mode === 'per-unit' || mode === 'backflush') {
      ctx.addIssue({
        code: 'custom',
        path: ['rules', i, 'consumption', 'mode'],
        message: `rule "${c.rules[ev].id}" posts consumption from events for ${cp.workCenter}; with consumption mode ${mode} it would be ${mode === 'backflush' ? 'backflushed by the ERP' : 'posted per unit'} as well. Use mode: events`,
      });
    }
  });
}
