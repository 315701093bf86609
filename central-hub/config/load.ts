import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, resolve } from 'node:path';
import { configError, parseConfig, parseYaml, resolveSecrets, type SecretSources } from '../../contracts/index.ts';
import { hubConfigSchema, type HubConfig } from './schema.ts';

export function loadHubConfig(file: string, sources?: SecretSources): { config: HubConfig; version: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw configError([{ path: '(file)', message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }]);
  }
  return parseHubConfig(text, file, sources);
}

export function parseHubConfig(text: string, file: string, sources?: SecretSources): { config: HubConfig; version: string } {
  const baseDir = dirname(resolve(file));
  const parsed = parseConfig(hubConfigSchema, parseYaml(text, file) ?? {}, file);
  const config = resolveSecrets(parsed, sources ?? { env: process.env, readFile: (p) => readFileSync(isAbsolute(p) ? p : resolve(baseDir, p), 'utf8') }, file);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  config.hub.dataDir = abs(config.hub.dataDir);
  if (config.hub.tls) {
    const t = config.hub.tls;
    config.hub.tls = { ...t, cert: abs(t.cert), key: abs(t.key), ...(t.clientCa ? { clientCa: abs(t.clientCa) } : {}) };
  }
  return { config, version: createHash('sha256').update(text).digest('hex').slice(0, 12) };
}
