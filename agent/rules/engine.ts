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
  /** rules by input source, then ref: two lookups on the signal's own strings, no key built per signal */
  private readonly byInput = new Map<string, Map<string, Rule[]>>();
  private readonly rules: Rule[];
  private readonly opts: EngineOptions;

  constructor(rules: Rule[], opts: EngineOptions) {
    this.rules = rules;
    this.opts = opts;
    for (const rule of rules) {
      for (const input of rule.inputs) {
        let refs = this.byInput.get(input.source);
        if (!refs) this.byInput.set(input.source, (refs = new Map()));
        const list = refs.get(input.ref) ?? [];
        if (!list.includes(rule)) list.push(rule);
        refs.set(input.ref, list);
      }
    }
  }

  private ctx(): RuleContext {
    return new DeriveContext(this.opts);
  }

  derive(signal: Signal, state: StateAccess): Derivation {
    const rules = this.byInput.get(signal.source)?.get(signal.ref);
    const out: Derivation = { items: [], quarantined: [] };
    if (!rules) return out;
    const ctx = this.ctx();
    for (const rule of rules) {
      const stored = state.get(rule.id);
      const before = stored ?? rule.initialState();
      const r = rule.apply(before, signal, ctx);
      if (r.state !== before || stored === undefined) state.set(rule.id, r.state);
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

/** One derive's context. The clock is read once, when a rule first asks: most readings never do. */
class DeriveContext implements RuleContext {
  readonly plant: string;
  readonly agentId: string;
  readonly timeZone: string;
  private readonly clock: () => number;
  private at: number | undefined;

  constructor(opts: EngineOptions) {
    this.plant = opts.plant;
    this.agentId = opts.agentId;
    this.timeZone = opts.timeZone;
    this.clock = opts.now ?? Date.now;
  }

  get now(): number {
    return (this.at ??= this.clock());
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
