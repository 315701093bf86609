/**
 * Topic filters with named levels: `plant/+line/+machine/events` subscribes to `plant/+/+/events` and
 * names levels 1 and 2 `line` and `machine`. A trailing `#rest` names the remaining levels (joined by /).
 */

export interface NamedLevel {
  index: number;
  name: string;
  /** true for a trailing #name: the rest of the topic */
  rest: boolean;
}

export interface ParsedFilter {
  /** the filter as sent to the broker */
  mqtt: string;
  levels: NamedLevel[];
  segments: string[];
}

const NAME = /^[A-Za-z0-9_-]+$/;

export function parseFilter(filter: string): ParsedFilter {
  if (filter.length === 0) throw new Error('an empty topic filter matches nothing');
  if (filter.includes('\u0000')) throw new Error('a topic filter must not contain NUL');
  const parts = filter.split('/');
  const levels: NamedLevel[] = [];
  const segments = parts.map((p, i) => {
    if (p.startsWith('+')) {
      const name = p.slice(1);
      if (name && !NAME.test(name)) throw new Error(`level ${i + 1} "${p}": a named wildcard is + followed by letters, digits, _ or -`);
      if (name) levels.push({ index: i, name, rest: false });
      return '+';
    }
    if (p.startsWith('#')) {
      if (i !== parts.length - 1) throw new Error(`level ${i + 1} "${p}": # must be the last level`);
      const name = p.slice(1);
      if (name && !NAME.test(name)) throw new Error(`level ${i + 1} "${p}": a named wildcard is # followed by letters, digits, _ or -`);
      if (name) levels.push({ index: i, name, rest: true });
      return '#';
    }
    if (p.includes('+') || p.includes('#')) throw new Error(`level ${i + 1} "${p}": + and # must fill a whole level`);
    return p;
  });
  const names = new Set<string>();
  for (const l of levels) {
    if (names.has(l.name)) throw new Error(`level name "${l.name}" is used twice`);
    names.add(l.name);
  }
  return { mqtt: segments.join('/'), levels, segments };
}

/** The named levels of a topic, or undefined when the topic does not match the filter. */
export function matchTopic(f: ParsedFilter, topic: string): Record<string, string> | undefined {
  const t = topic.split('/');
  const s = f.segments;
  // MQTT: wildcards at the first level do not match topics starting with $ ($SYS, $share)
  if ((s[0] === '+' || s[0] === '#') && topic.startsWith('$')) return undefined;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '#') break;
    if (i >= t.length) return undefined;
    if (s[i] !== '+' && s[i] !== t[i]) return undefined;
  }
  const last = s[s.length - 1];
  if (last === '#') {
    if (t.length < s.length - 1) return undefined;
  } else if (t.length !== s.length) return undefined;
  const out: Record<string, string> = {};
  for (const l of f.levels) out[l.name] = l.rest ? t.slice(l.index).join('/') : t[l.index];
  return out;
}

/**
 * matchTopic compiled for one filter: walks the topic with indexOf instead of splitting it, and builds
 * only the named levels. Same result as matchTopic(f, topic) for every topic (mapping-equivalence.test.ts).
 */
export function compileMatcher(f: ParsedFilter): (topic: string) => Record<string, string> | undefined {
  const s = f.segments;
  const hash = s[s.length - 1] === '#';
  const fixed = hash ? s.length - 1 : s.length;
  const names: Array<string | undefined> = s.map((_, i) => f.levels.find((l) => l.index === i && !l.rest)?.name);
  const restName = f.levels.find((l) => l.rest)?.name;
  const wildFirst = s[0] === '+' || s[0] === '#';
  return (topic) => {
    // MQTT: wildcards at the first level do not match topics starting with $ ($SYS, $share)
    if (wildFirst && topic.charCodeAt(0) === 36) return undefined;
    const out: Record<string, string> = {};
    const len = topic.length;
    let start = 0;
    for (let i = 0; i < fixed; i++) {
      if (start > len) return undefined; // the topic has fewer levels
      let end = topic.indexOf('/', start);
      if (end === -1) end = len;
      const seg = s[i];
      if (seg !== '+') {
        if (end - start !== seg.length || !topic.startsWith(seg, start)) return undefined;
      } else {
        const name = names[i];
        if (name !== undefined) out[name] = topic.slice(start, end);
      }
      start = end + 1;
    }
    if (!hash) return start > len ? out : undefined;
    if (restName !== undefined) out[restName] = start <= len ? topic.slice(start) : '';
    return out;
  };
}

const PLACEHOLDER = /\{([A-Za-z0-9_-]+)\}/g;

export function placeholdersOf(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]);
}

export function expandTemplate(template: string, values: Record<string, string>): string {
  return template.replace(PLACEHOLDER, (_, name: string) => values[name] ?? '');
}

/** expandTemplate compiled for one template: literal parts and names, concatenated. */
export function compileTemplate(template: string): (values: Record<string, string>) => string {
  const literals: string[] = [];
  const names: string[] = [];
  let last = 0;
  for (const m of template.matchAll(PLACEHOLDER)) {
    literals.push(template.slice(last, m.index));
    names.push(m[1]);
    last = m.index + m[0].length;
  }
  const tail = template.slice(last);
  if (names.length === 0) return () => template;
  return (values) => {
    let out = '';
    for (let i = 0; i < names.length; i++) out += literals[i] + (values[names[i]] ?? '');
    return out + tail;
  };
}
