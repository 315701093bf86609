/**
 * The small, stable set of error codes used everywhere in PlantBridge (agent, hub, wire).
 * Callers match on `code`, never on message text. docs/ERRORS.md explains each one.
 */
export const ErrorCodes = {
  /** A configuration file is invalid: a typo, a wrong type, a missing secret. Fix the config. */
  CONFIG_INVALID: { retriable: false, http: 400 },
  /** A wire object or payload does not match its schema. Dead-lettered with the offending path. */
  SCHEMA_INVALID: { retriable: false, http: 400 },
  /** The schema major version (or a newer minor) is not supported by this hub. Upgrade the hub first. */
  SCHEMA_UNSUPPORTED: { retriable: false, http: 400 },
  /** The request carries no valid credential, or a revoked / expired one. */
  UNAUTHENTICATED: { retriable: false, http: 401 },
  /** An agent tried to write for a plant it is not enrolled for. Audited. */
  PLANT_MISMATCH: { retriable: false, http: 403 },
  /** The request body is larger than the hub accepts. The forwarder splits batches below the limit. */
  PAYLOAD_TOO_LARGE: { retriable: false, http: 413 },
  /** Too many requests from this agent; honour Retry-After. */
  RATE_LIMITED: { retriable: true, http: 429 },
  /** Not found (unknown route, transaction, dead letter). */
  NOT_FOUND: { retriable: false, http: 404 },
  /** The agent's outbox reached maxBytes or the disk-free floor: sources are no longer acknowledged. */
  OUTBOX_FULL: { retriable: true, http: 507 },
  /** The outbox hit an I/O error (EIO, ENOSPC); handled like OUTBOX_FULL, then recovered. */
  OUTBOX_IO: { retriable: true, http: 507 },
  /** The outbox database file was corrupt at start; it was quarantined and a fresh one started. */
  OUTBOX_CORRUPT: { retriable: false, http: 500 },
  /** A payload could not be decoded (not JSON, wrong encoding, oversized). Dead-lettered with the raw bytes. */
  PAYLOAD_INVALID: { retriable: false, http: 400 },
  /** A counter moved further than `maxJump` allows: quarantined, never posted, until a person decides. */
  COUNTER_JUMP: { retriable: false, http: 422 },
  /** Parts whose order is not certain: counted while no order was active, after the order's final
   *  confirmation, or confirmed to one order before a late tag showed they belong to another. Never posted
   *  by the rule; a person decides (post by hand, correct the orders in the ERP, or discard). */
  ORDER_ATTRIBUTION: { retriable: false, http: 422 },
  /** The ERP (or the hub) is unreachable, timed out, or answered 5xx/429: retried with backoff. */
  UPSTREAM_UNAVAILABLE: { retriable: true, http: 503 },
  /** The ERP refused the posting for a business reason (order closed, unit unknown). A person must act. */
  ERP_BUSINESS: { retriable: false, http: 422 },
  /** The ERP call's outcome is unknown (timeout after sending). Resolved by looking the key up first. */
  ERP_IN_DOUBT: { retriable: true, http: 504 },
  /** A bug or an unexpected state. Logged with the correlation id. */
  INTERNAL: { retriable: true, http: 500 },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;
export const errorCodeList = Object.keys(ErrorCodes) as ErrorCode[];

/**
 * Alarms an agent raises (its health and its heartbeat's `alarms[].code`): they stay until the cause is gone
 * or someone acknowledges them. All but HUB_TLS_REFUSED are codes of the catalogue above.
 */
export const AlarmCodes = {
  OUTBOX_FULL: 'the outbox reached maxBytes or the disk-free floor: sources are not acknowledged',
  OUTBOX_IO: 'the outbox hit an I/O error; handled like OUTBOX_FULL',
  OUTBOX_CORRUPT: 'the outbox file was corrupt at start and was moved aside (acknowledge with outbox ack-alarm)',
  UNAUTHENTICATED: "the hub refuses the agent's credential: transactions stay in the outbox",
  HUB_TLS_REFUSED: "the hub's certificate is not trusted (hub.ca / hub.fingerprint), or the hub refused the agent's client certificate",
} as const;
export type AlarmCode = keyof typeof AlarmCodes;

/**
 * `erpCode`: what an ERP adapter adds to UPSTREAM_UNAVAILABLE / ERP_IN_DOUBT / ERP_BUSINESS. Either one of
 * the adapters' own sub-codes below (the ERP gave no code of its own), or the ERP's message code as it
 * gave it (ErpMessageCode: SAP `RU/494`, `D365/Error`, `odoo/UserError`, a REST receiver's code).
 */
export const ErpSubCodes = {
  /** the hub's ERP credentials were refused (never uses up a transaction's attempts: an operator problem) */
  AUTH: 'the ERP refused the hub\'s credentials',
  /** a success status with an answer the adapter cannot read (no document number, not JSON) */
  BAD_RESPONSE: 'an answer the adapter cannot read',
  /** the connection failed, reset or timed out */
  TRANSPORT: 'the connection failed, was reset, or timed out',
  /** D365: the message is accepted but not processed yet */
  NOT_PROCESSED: 'the ERP has the message but has not processed it yet',
  /** SAP: a freshly fetched CSRF token was refused (cookies lost on the way, e.g. by a proxy) */
  CSRF: 'the ERP refused a fresh CSRF token',
  /** SAP: an order has more confirmations than a lookup reads, so the lookup cannot decide */
  LOOKUP_LIMIT: 'too many documents to look the key up',
} as const;
/** An adapter's own sub-code, or `HTTP_<status>` when the status is all the ERP said. */
export type ErpSubCode = keyof typeof ErpSubCodes | `HTTP_${number}`;
/** The ERP's own message code, passed on as it came (mark it with erpMessageCode()). */
export type ErpMessageCode = string & { readonly __erpMessageCode: true };
export type ErpCode = ErpSubCode | ErpMessageCode;
/** Marks a code that came from the ERP itself (type only: the string is unchanged). */
export const erpMessageCode = (code: string): ErpMessageCode => code as ErpMessageCode;

export class PlantBridgeError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly correlationId: string | undefined;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, opts: { correlationId?: string; retriable?: boolean; details?: unknown; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PlantBridgeError';
    this.code = code;
    this.retriable = opts.retriable ?? ErrorCodes[code].retriable;
    this.correlationId = opts.correlationId;
    this.details = opts.details;
  }

  toJSON(): ErrorBody['error'] {
    return {
      code: this.code,
      message: this.message,
      retriable: this.retriable,
      ...(this.correlationId ? { correlationId: this.correlationId } : {}),
      ...(this.details !== undefined ? { details: this.details } : {}),
    };
  }
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string; retriable: boolean; correlationId?: string; details?: unknown };
}

/** A code read from a database or another process: a catalogue code, else undefined. */
export function asErrorCode(v: unknown): ErrorCode | undefined {
  return typeof v === 'string' && Object.hasOwn(ErrorCodes, v) ? (v as ErrorCode) : undefined;
}

export function isPlantBridgeError(err: unknown, code?: ErrorCode): err is PlantBridgeError {
  return err instanceof PlantBridgeError && (code === undefined || err.code === code);
}
