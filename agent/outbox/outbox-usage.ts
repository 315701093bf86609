/** The outbox subcommands, apart from outbox-cli.ts so that the CLI's help loads no SQLite. */
export const OUTBOX_USAGE = `outbox commands (run beside the agent, on its live database):
  outbox stats                          pending, oldest age, dead letters, bytes, disk free, alarms (JSON)
  outbox list [--status S] [--after SEQ] [--limit N]
                                        transactions in outbox order (S: pending|leased|sent|dead|shadow|discarded)
  outbox dead-letters [--limit N]       open dead letters, newest first
  outbox replay <id> | replay --all     queue dead-lettered transactions again (after the cause was fixed)
  outbox discard <id>                   resolve a dead letter without sending it
  outbox resend --since <time>          put transactions sent since <time> back to pending, for a hub restored
                                        from a backup (the hub dedupes). <time>: ISO 8601, or 90m / 6h / 2d ago
  outbox ack-alarm <code>               acknowledge an alarm (e.g. OUTBOX_CORRUPT)`;
