/**
 * The webhook's templates: "{{path}}" placeholders over a small context (tx, key, externalId, type).
 * Deliberately not a template language: no logic, no functions, nothing to escape from.
 */

const WHOLE = /^\{\{\s*([A-Za-z0-9_.$-]+)\s*\}\}$/;
const INLINE = /\{\{\s*([A-Za-z0-9_.$-]+)\s*\}\}/g;

/** The value at a dot path (`tx.data.order`, `items.0.id`); undefined when any step is missing. */
export function valueAt(root: unknown, path: string): unknown {
  let v: unknown = root;
  for (const seg of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    if (!Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
    v = (v as Record<string, unknown>)[seg];
  }
  return v;
}

function scalar(v: unknown): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** Every placeholder a template uses that the context does not have (reported at config check). */
export function unknownPlaceholders(template: unknown, context: Record<string, unknown>): string[] {
  const out: string[] = [];
  const walk = (t: unknown) => {
    if (typeof t === 'string') {
      for (const m of t.matchAll(INLINE)) {
        const root = m[1].split('.')[0];
        if (!(root in context)) out.push(m[1]);
      }
    } else if (Array.isArray(t)) t.forEach(walk);
    else if (t && typeof t === 'object') Object.values(t).forEach(walk);
  };
  walk(template);
  return out;
}

/** Renders a JSON template; a key whose whole-value placeholder is missing is left out. */
export function renderJson(template: unknown, context: Record<string, unknown>): unknown {
  if (typeof template === 'string') {
    const whole = WHOLE.exec(template);
    if (whole) return valueAt(context, whole[1]);
    return template.replace(INLINE, (_, p: string) => scalar(valueAt(context, p)));
  }
  if (Array.isArray(template)) return template.map((t) => renderJson(t, context)).filter((v) => v !== undefined);
  if (template && typeof template === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, t] of Object.entries(template)) {
      const v = renderJson(t, context);
      if (v !== undefined) out[k] = v;
    }
    return out;
  }
  return template;
}

/** Renders a URL template; every value is URL-encoded. */
export function renderUrl(template: string, context: Record<string, unknown>): string {
  return template.replace(INLINE, (_, p: string) => encodeURIComponent(scalar(valueAt(context, p))));
}
