/** Metric names shared by code, dashboards and docs (DESIGN.md §8): plantbridge_<agent|hub>_<noun>_<unit>. */
export const AgentMetrics = {
  signalsReceived: 'plantbridge_agent_signals_received_total',
  signalsDuplicate: 'plantbridge_agent_signals_duplicate_total',
  outboxPending: 'plantbridge_agent_outbox_pending',
  outboxOldestPending: 'plantbridge_agent_outbox_oldest_pending_seconds',
  outboxDeadLetters: 'plantbridge_agent_outbox_dead_letters',
  outboxBytes: 'plantbridge_agent_outbox_bytes',
  outboxFull: 'plantbridge_agent_outbox_full',
  commitSeconds: 'plantbridge_agent_outbox_commit_seconds',
  transactionsDerived: 'plantbridge_agent_transactions_derived_total',
  forwarded: 'plantbridge_agent_forwarded_total',
  forwardRejected: 'plantbridge_agent_forward_rejected_total',
  forwardErrors: 'plantbridge_agent_forward_errors_total',
  driverUp: 'plantbridge_agent_driver_up',
} as const;

export const HubMetrics = {
  transactionsReceived: 'plantbridge_hub_transactions_received_total',
  transactionsDuplicate: 'plantbridge_hub_transactions_duplicate_total',
  transactionsRejected: 'plantbridge_hub_transactions_rejected_total',
  erpPosted: 'plantbridge_hub_erp_posted_total',
  erpFailed: 'plantbridge_hub_erp_failed_total',
  erpPostingSeconds: 'plantbridge_hub_erp_posting_seconds',
  postingQueue: 'plantbridge_hub_posting_queue',
  heartbeatsReceived: 'plantbridge_hub_heartbeats_received_total',
  agentsOnline: 'plantbridge_hub_agents',
} as const;
