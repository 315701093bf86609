import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, resolve } from 'node:path';
import { configError, parseConfig, parseYaml, resolveSecrets, type SecretSources } from '../../contracts/index.ts';
import { agentConfigSchema, type AgentConfig } from './schema.ts';

export interface LoadedConfig<T> {
  config: T;
  file: string;
  /** sha256 of the file's bytes, short: reported in heartbeats so the hub sees which config runs */
  version: string;
}

export function defaultSecretSources(baseDir: string): SecretSources {
  return {
    env: process.env,
    readFile: (p) => readFileSync(isAbsolute(p) ? p : resolve(baseDir, p), 'utf8'),
  };
}

/** Reads, validates and resolves agent.yaml. Throws CONFIG_INVALID listing every problem with its path. */
export function loadAgentConfig(file: string, sources?: SecretSources): LoadedConfig<AgentConfig> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw configError([{ path: '(file)', message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }]);
  }
  return parseAgentConfig(text, file, sources);
}

export function parseAgentConfig(text: string, file: string, sources?: SecretSources): LoadedConfig<AgentConfig> {
  const baseDir = dirname(resolve(file));
  const raw = parseYaml(text, file);
  const parsed = parseConfig(agentConfigSchema, raw ?? {}, file);
  const config = resolveSecrets(parsed, sources ?? defaultSecretSources(baseDir), file);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  config.agent.stateDir = abs(config.agent.stateDir);
  // files named in agent.yaml are relative to its folder, in `run` as in `enroll` (issue #22)
  if (config.hub.ca) config.hub.ca = abs(config.hub.ca);
  if (config.hub.clientCert) config.hub.clientCert = abs(config.hub.clientCert);
  if (config.hub.clientKey) config.hub.clientKey = abs(config.hub.clientKey);
  return { config, file, version: createHash('sha256').update(text).digest('hex').slice(0, 12) };
}
