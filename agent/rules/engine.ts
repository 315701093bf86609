import type { Signal } from '../../contracts/index.ts';
import type { Derivation, Deriver, StateAccess } from '../outbox/outbox.ts';
import type { RuleConfig } from '../config/schema.ts';
import type { Rule, RuleContext } from './rule.ts';
import { countProduction } from './count-production/count-production.ts';
import { mapEvent } from './map-event/map-event.ts';

export interface EngineOptions {
  plant: string;
  agentId: string;
  timeZone: string;
  mode: 'live' | 'shadow';
  now?: () => number;
}

/** Dispatches each signal to the rules that listen to its (source, ref), and collects their output. */
export class RuleEngine implements Deriver {
  private readonly byInput = new Map<string, Rule[]>();
  private readonly rules: Rule[];
  private readonly opts: EngineOptions;

  constructor(rules: Rule[], opts: EngineOptions) {
    this.rules = rules;
    this.opts = opts;
    for (const rule of rules) {
      for (const input of rule.inputs) {
        const key = `${input.source}\u0000${input.ref}`;
        const list = this.byInput.get(key) ?? [];
        if (!list.includes(rule)) list.push(rule);
        this.byInput.set(key, list);
      }
    }
  }

  private ctx(): RuleContext {
    return { plant: this.opts.plant, agentId: this.opts.agentId, timeZone: this.opts.timeZone, now: (this.opts.now ?? Date.now)() };
  }

  derive(signal: Signal, state: StateAccess): Derivation {
    const rules = this.byInput.get(`${signal.source}\u0000${signal.ref}`);
    const out: Derivation = { items: [], quarantined: [] };
    if (!rules) return out;
    const ctx = this.ctx();
    for (const rule of rules) {
      const before = (state.get(rule.id) as unknown) ?? rule.initialState();
      const r = rule.apply(before, signal, ctx);
      if (r.state !== before || state.get(rule.id) === undefined) state.set(rule.id, r.state);
      for (const tx of r.transactions) out.items.push({ tx, shadow: rule.mode === 'shadow' });
      if (r.quarantined) out.quarantined.push(...r.quarantined);
    }
    return out;
  }

  tick(_nowMs: number, state: StateAccess): Derivation {
    const out: Derivation = { items: [], quarantined: [] };
    const ctx = this.ctx();
    for (const rule of this.rules) {
      if (!rule.tick) continue;
      const before = state.get(rule.id);
      if (before === undefined) continue;
      const r = rule.tick(before, ctx);
      if (r.transactions.length === 0 && r.state === before) continue;
      state.set(rule.id, r.state);
      for (const tx of r.transactions) out.items.push({ tx, shadow: rule.mode === 'shadow' });
      if (r.quarantined) out.quarantined.push(...r.quarantined);
    }
    return out;
  }
}

/**
 * A rule runs in shadow when it says so or when the agent does: an agent in shadow mode must not leave
 * pending items behind that a later switch to live would forward.
 */
export function effectiveMode(ruleMode: 'live' | 'shadow' | undefined, agentMode: 'live' | 'shadow'): 'live' | 'shadow' {
  return agentMode === 'shadow' ? 'shadow' : (ruleMode ?? 'live');
}

export function buildRules(configs: RuleConfig[], agentMode: 'live' | 'shadow'): Rule[] {
  return configs.map((c): Rule => {
    const mode = effectiveMode(c.mode, agentMode);
    switch (c.type) {
      case 'count-production':
        return countProduction(c, mode) as Rule;
      case 'map-event':
        return mapEvent(c, mode) as Rule;
    }
  });
}
