import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { isPlantBridgeError } from './errors.ts';

/**
 * Argument parsing shared by both CLIs: one table of commands, each with its own options and help text.
 * `<prog> <command> --help` and `<prog> help <command>` print that command's help; an option the command
 * does not take, or one missing its value, is a usage error in a sentence of ours (node:util's parseArgs
 * messages describe its own API, with quotes that do not balance).
 */

export interface CliCommand {
  /** the text `<prog> <command> --help` prints */
  help: string;
  /** options of this command besides the global ones */
  options: ParseArgsOptionsConfig;
}

export interface CliSpec {
  prog: string;
  /** the program's help: `<prog> --help`, and after an unknown command */
  help: string;
  /** options every command takes (--config, --help, --version) */
  globals: ParseArgsOptionsConfig;
  commands: Record<string, CliCommand>;
}

/** A usage error: exit code 1, the message, then the help of the command it concerns (or the program's). */
export class UsageError extends Error {
  readonly help: string;
  /** the command it concerns, if any: "plantbridge-agent run: unknown option --frob" */
  readonly command: string | undefined;
  constructor(message: string, help: string, command?: string) {
    super(message);
    this.help = help;
    this.command = command;
  }
}

export type ParsedCli =
  | { kind: 'version' }
  | { kind: 'help'; text: string }
  | { kind: 'command'; command: string; values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[]; argv: string[] };

/** Finds the command, checks its options strictly, answers --help / --version. Throws UsageError. */
export function parseCli(spec: CliSpec, argv: string[]): ParsedCli {
  // first pass, lenient, with every option any command knows: which command is it?
  const all: ParseArgsOptionsConfig = { ...spec.globals };
  for (const c of Object.values(spec.commands)) Object.assign(all, c.options);
  const loose = parseArgs({ args: argv, options: all, strict: false, allowPositionals: true });
  const [command, ...rest] = loose.positionals;
  if (command === 'help') {
    const topic = rest[0];
    if (topic === undefined) return { kind: 'help', text: spec.help };
    const c = Object.hasOwn(spec.commands, topic) ? spec.commands[topic] : undefined;
    if (!c) throw new UsageError(`no help for ${JSON.stringify(topic)}: not a command`, spec.help);
    return { kind: 'help', text: c.help };
  }
  if (command === undefined) {
    if (loose.values.version === true) return { kind: 'version' };
    if (loose.values.help === true) return { kind: 'help', text: spec.help };
    strictParse(spec.globals, argv, spec.help);
    throw new UsageError('a command is needed', spec.help);
  }
  const c = Object.hasOwn(spec.commands, command) ? spec.commands[command] : undefined;
  if (!c) throw new UsageError(`unknown command ${JSON.stringify(command)}`, spec.help);
  const strict = strictParse({ ...spec.globals, ...c.options }, argv, c.help, command);
  if (strict.values.help === true) return { kind: 'help', text: c.help };
  if (strict.values.version === true) return { kind: 'version' };
  const at = argv.indexOf(command);
  return { kind: 'command', command, values: strict.values, positionals: strict.positionals.slice(1), argv: [...argv.slice(0, at), ...argv.slice(at + 1)] };
}

function strictParse(options: ParseArgsOptionsConfig, argv: string[], help: string, command?: string) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(usageMessage(err), help, command);
  }
}

/** node:util parseArgs' error as a short sentence: "unknown option --frob", "--config needs a value". */
export function usageMessage(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  const long = (names: string) => names.split(/,\s*/).pop()!.replace(/ <value>$/, '');
  let r: RegExpExecArray | null;
  if ((r = /^Unknown option '([^']+)'/.exec(m))) return `unknown option ${r[1]}`;
  if ((r = /^Option '([^']+)' argument missing/.exec(m))) return `${long(r[1])} needs a value`;
  if ((r = /^Option '([^']+)' argument is ambiguous/.exec(m))) return `${long(r[1])} needs a value (one that starts with a dash goes as ${long(r[1])}=VALUE)`;
  if ((r = /^Option '([^']+)' does not take an argument/.exec(m))) return `${long(r[1])} takes no value`;
  if ((r = /^Unexpected argument '([^']+)'/.exec(m))) return `unexpected argument ${JSON.stringify(r[1])}`;
  return m.split('\n')[0];
}

/**
 * How a CLI ends on an error, as text for stderr and an exit code: a usage error (1) with the help it
 * concerns, an invalid configuration (1) as its message alone, anything else (2) with its code and stack.
 */
export function describeFailure(prog: string, err: unknown): { text: string; exitCode: number } {
  if (err instanceof UsageError) return { text: `${prog}${err.command ? ` ${err.command}` : ''}: ${err.message}\n\n${err.help}\n`, exitCode: 1 };
  if (isPlantBridgeError(err, 'CONFIG_INVALID')) return { text: `${prog}: ${err.message}\n`, exitCode: 1 };
  return { text: `${prog}: ${isPlantBridgeError(err) ? `${err.code}: ` : ''}${(err as Error)?.stack ?? String(err)}\n`, exitCode: 2 };
}

/** --config, --help and --version: what every command of both CLIs takes. */
export const GLOBAL_OPTIONS: ParseArgsOptionsConfig = {
  config: { type: 'string', short: 'c' },
  version: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
};

const DEFAULT_EXIT = 'Exit codes: 0 ok, 1 invalid configuration or usage, 2 runtime failure.';

/** One command's help: its usage line, what it does, its options (after --config), its exit codes. */
export function commandHelp(configOption: string, usage: string, text: string, options = '', exit = DEFAULT_EXIT): string {
  return `Usage: ${usage}\n\n${text}\n\nOptions:\n${configOption}${options ? `\n${options}` : ''}\n\n${exit}`;
}

/**
 * Where the docs are, for the program's help: in a checkout the repository's files; a single executable
 * ships INSTALL.md and the example config beside it in its release folder.
 */
export function docsLine(app: 'agent' | 'hub', singleExecutable: boolean, platform: string = process.platform): string {
  if (!singleExecutable) return `Docs: README.md, docs/INSTALL.md, config/${app}.example.yaml`;
  const where =
    platform === 'win32'
      ? `install.ps1 copies ${app}.example.yaml to %ProgramData%\\PlantBridge\\${app}\\config\\`
      : `the .deb puts them in /usr/share/doc/plantbridge-${app}/`;
  return `Docs: INSTALL.md and ${app}.example.yaml beside this executable in its release folder\n(${where}).`;
}

/** Ends the CLI: the exit code main resolved to, or the failure described on stderr (see describeFailure). */
export function finish(prog: string, main: Promise<number>): void {
  main.then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      const { text, exitCode } = describeFailure(prog, err);
      process.stderr.write(text);
      process.exitCode = exitCode;
    },
  );
}
