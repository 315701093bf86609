/** `plantbridge-agent enroll --help`, apart from enroll.ts so that the CLI's help loads nothing heavy. */
export const ENROLL_HELP = `Usage: plantbridge-agent enroll --token-stdin | --token TOKEN [--hub URL] [--config FILE]

Exchanges a one-time enrollment token (from "plantbridge-hub agents add") for this agent's credential,
stored in <agent.stateDir>/hub-credential (mode 0600 on Linux; the state folder's ACLs on Windows).
hub.ca / hub.fingerprint from agent.yaml are used to verify the hub. agent.yaml's hub.token must then
read: file:<that path> (the command says so if it does not).

Options:
  -c, --config FILE   agent.yaml (default: $PLANTBRIDGE_AGENT_CONFIG, else ./agent.yaml)
      --token-stdin   read the one-time token from standard input (paste it, or pipe it in):
                      it stays out of the shell history and the process list
      --token TOKEN   the one-time token on the command line; without either option the
                      environment variable PLANTBRIDGE_ENROLL_TOKEN is used
      --hub URL       the hub to enroll with (default: hub.url from agent.yaml)

Exit codes: 0 enrolled, 1 usage, configuration or a refused token, 2 the hub cannot be reached.`;
