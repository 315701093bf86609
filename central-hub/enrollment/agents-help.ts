/** `plantbridge-hub agents --help`, apart from agents-cli.ts so that the CLI's help opens no store. */
export const AGENTS_HELP = `plantbridge-hub agents — agent identities (enrollment tokens, credentials)

Usage:
  plantbridge-hub agents add --plant P [--plant P2] --name N [--ttl 24h] [--config FILE]
      prints a one-time enrollment token for agent N (the agent.id in its agent.yaml)
  plantbridge-hub agents list [--json] [--config FILE]
  plantbridge-hub agents revoke --name N [--config FILE]
      the agent's credential and unused tokens stop working at once
  plantbridge-hub agents rotate --name N [--plant P ...] [--ttl 24h] [--config FILE]
      prints a new enrollment token; the old credential works until the agent enrolls with it

The token works once and expires (default 24 h). The hub stores only hashes of tokens and credentials.`;
