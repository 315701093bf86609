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
  // MQTT session (mqtt and sparkplug drivers), label {driver}; read from the driver's stats() at scrape time
  mqttMessagesReceived: 'plantbridge_agent_mqtt_messages_received_total',
  mqttMessagesIgnored: 'plantbridge_agent_mqtt_messages_ignored_total',
  /** label {driver, code} */
  mqttDeadLetters: 'plantbridge_agent_mqtt_dead_letters_total',
  mqttSignalsCommitted: 'plantbridge_agent_mqtt_signals_committed_total',
  mqttCommits: 'plantbridge_agent_mqtt_commits_total',
  mqttCommitFailures: 'plantbridge_agent_mqtt_commit_failures_total',
  mqttConnects: 'plantbridge_agent_mqtt_connects_total',
  mqttAcksSent: 'plantbridge_agent_mqtt_acks_sent_total',
  mqttAcksDropped: 'plantbridge_agent_mqtt_acks_dropped_total',
  mqttCommitThreadCpu: 'plantbridge_agent_mqtt_commit_thread_cpu_seconds_total',
  // Sparkplug B host state, label {driver}
  sparkplugBirths: 'plantbridge_agent_sparkplug_births_total',
  sparkplugDeaths: 'plantbridge_agent_sparkplug_deaths_total',
  sparkplugStaleDeaths: 'plantbridge_agent_sparkplug_stale_deaths_total',
  sparkplugSeqGaps: 'plantbridge_agent_sparkplug_seq_gaps_total',
  sparkplugUnknownNode: 'plantbridge_agent_sparkplug_unknown_node_messages_total',
  sparkplugUnknownAlias: 'plantbridge_agent_sparkplug_unknown_alias_metrics_total',
  sparkplugRebirthRequests: 'plantbridge_agent_sparkplug_rebirth_requests_total',
  /** label {driver, state="online"|"offline"}: offline = its metrics are stale */
  sparkplugEdgeNodes: 'plantbridge_agent_sparkplug_edge_nodes',
  // OPC UA client (opcua driver), label {driver}; read from the driver's stats() at scrape time
  opcuaConnects: 'plantbridge_agent_opcua_connects_total',
  opcuaConnectFailures: 'plantbridge_agent_opcua_connect_failures_total',
  opcuaSessionsCreated: 'plantbridge_agent_opcua_sessions_created_total',
  opcuaSessionsReactivated: 'plantbridge_agent_opcua_sessions_reactivated_total',
  opcuaSubscriptionsCreated: 'plantbridge_agent_opcua_subscriptions_created_total',
  opcuaSubscriptionsTransferred: 'plantbridge_agent_opcua_subscriptions_transferred_total',
  opcuaSubscriptionsKept: 'plantbridge_agent_opcua_subscriptions_kept_total',
  opcuaWatchdogRecreations: 'plantbridge_agent_opcua_watchdog_recreations_total',
  opcuaNotifications: 'plantbridge_agent_opcua_notifications_total',
  opcuaRepublished: 'plantbridge_agent_opcua_republished_messages_total',
  opcuaMessagesLost: 'plantbridge_agent_opcua_lost_messages_total',
  opcuaBadValues: 'plantbridge_agent_opcua_bad_values_total',
  opcuaSignalsCommitted: 'plantbridge_agent_opcua_signals_committed_total',
  opcuaCommitFailures: 'plantbridge_agent_opcua_commit_failures_total',
  opcuaValuesFolded: 'plantbridge_agent_opcua_values_folded_total',
  /** gauge, label {driver, state="ok"|"bad"}: monitored items as last created */
  opcuaMonitoredItems: 'plantbridge_agent_opcua_monitored_items',
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
  requestsRateLimited: 'plantbridge_hub_requests_rate_limited_total',
  // business monitoring (central-hub/monitor/, docs/MONITORING.md): set from the last SLA check cycle
  /** label {plant, type, quantile="0.5"|"0.95"|"0.99"} */
  slaLatency: 'plantbridge_hub_sla_latency_seconds',
  /** label {plant, type, percentile} */
  slaLatencyObjective: 'plantbridge_hub_sla_latency_objective_seconds',
  /** label {plant, kind}: breaches open now */
  slaBreaches: 'plantbridge_hub_sla_breaches',
  /** label {plant, state="queued"|"in_doubt"|"held_back"|"dead_letter"}: accepted, not posted */
  openTransactions: 'plantbridge_hub_open_transactions',
  /** label {plant}: age of the oldest transaction accepted and not posted */
  oldestOpenSeconds: 'plantbridge_hub_oldest_open_transaction_seconds',
  monitorCycleSeconds: 'plantbridge_hub_monitor_cycle_seconds',
  monitorLastRun: 'plantbridge_hub_monitor_last_run_timestamp_seconds',
} as const;
