import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { it } from 'node:test';
import { createLogger, REDACTED, SECRET_KEYS } from './log.ts';

/** One logger factory and one redaction list for the agent and the hub (contracts/log.ts). */

const SIDES = { agent: { agentId: 'edge-1' }, hub: { component: 'hub' } };

function capture(base: Record<string, unknown>) {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { log: createLogger({ level: 'trace', base, destination }), lines };
}

void it('a secret under every redacted key name is redacted, on the agent and on the hub, at the top, one level down and in headers', async () => {
  for (const [side, base] of Object.entries(SIDES)) {
    const { log, lines } = capture(base);
    for (const key of SECRET_KEYS) {
      const canary = `canary-${side}-${key}-5f3a`;
      log.info({ [key]: canary }, 'top');
      log.info({ erp: { [key]: canary } }, 'nested');
      log.child({ component: 'api' }).warn({ req: { headers: { authorization: `Bearer ${canary}`, cookie: `sid=${canary}` } } }, 'headers');
      log.info({ config: { hub: { token: canary }, erp: { auth: { password: canary, clientSecret: canary } } } }, 'config');
    }
    await new Promise((r) => setImmediate(r));
    assert.ok(lines.length >= SECRET_KEYS.length * 4, `${side}: ${lines.length} lines`);
    const all = lines.join('\n');
    assert.doesNotMatch(all, /canary-/, `${side}: a secret got through`);
    assert.ok(lines.every((l) => l.includes(REDACTED)), `${side}: every line shows the censor`);
    for (const [k, v] of Object.entries(base)) assert.equal(JSON.parse(lines[0])[k], v, `${side}: bound ${k}`);
  }
});

void it('no other module sets up its own redaction (one list for both sides)', () => {
  const root = resolve(import.meta.dirname, '..');
  const offenders: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      if (name === 'node_modules' || name.startsWith('.')) continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && /\bredact\s*:/.test(readFileSync(p, 'utf8'))) offenders.push(relative(root, p));
    }
  };
  for (const d of ['agent', 'central-hub', 'contracts']) walk(join(root, d));
  assert.deepEqual(offenders, ['contracts/log.ts']);
});
