import { createHash, randomFillSync } from 'node:crypto';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * Random bytes from a pool refilled 4 KiB at a time: one randomBytes call costs ~2 µs whatever its size,
 * and every derived transaction needs 34 random bytes (ulid, trace id, span id). Same CSPRNG output, handed
 * out once each; none of these ids is a secret.
 */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let poolAt = POOL_BYTES;
/** the offset in pool of n fresh random bytes (n <= POOL_BYTES) */
function take(n: number): number {
  if (poolAt + n > POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const at = poolAt;
  poolAt += n;
  return at;
}
function randomHex(n: number): string {
  const at = take(n);
  return pool.toString('hex', at, at + n);
}
let lastTime = -1;
const lastRandom = new Uint8Array(10);

/**
 * A ULID: 48-bit millisecond time + 80 random bits, Crockford base32, monotonic within a millisecond.
 * Time-ordered ids keep B-tree inserts local (a random id as a leading key costs 6x at 1M rows).
 */
export function ulid(now: number = Date.now()): string {
  if (now <= lastTime) {
    now = lastTime;
    // increment the random part so ids stay strictly increasing inside one millisecond
    for (let i = lastRandom.length - 1; i >= 0; i--) {
      if (lastRandom[i] === 255) {
        lastRandom[i] = 0;
      } else {
        lastRandom[i]++;
        break;
      }
    }
  } else {
    lastTime = now;
    const at = take(10);
    // a copy: the pool is refilled under it
    pool.copy(lastRandom, 0, at, at + 10);
  }
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  let rand = '';
  let bits = 0;
  let acc = 0;
  for (const byte of lastRandom) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      rand += CROCKFORD[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return time + rand;
}

/** RFC 4122 UUID version 5 (SHA-1, name-based): the same name always gives the same UUID. */
export function uuidv5(name: string, namespace: string = PLANTBRIDGE_NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(ns).update(name, 'utf8').digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const h = hash.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** PlantBridge's fixed UUIDv5 namespace (a v4 UUID chosen once; never change it: ERP lookups depend on it). */
export const PLANTBRIDGE_NAMESPACE = '6f1c2a8e-4b7d-4e0a-9c53-2d8b1f7e5a90';

/** A new W3C traceparent with a random trace id and span id, sampled. */
export function newTraceparent(): string {
  return `00-${randomHex(16)}-${randomHex(8)}-01`;
}

/** A child span of a traceparent: same trace id, new span id. */
export function childTraceparent(parent: string): string {
  const m = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/.exec(parent);
  if (!m) return newTraceparent();
  return `00-${m[1]}-${randomHex(8)}-${m[2]}`;
}
