/** A token bucket per key: `rate` requests per second, bursts up to 2x. Monotonic clock. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly rate: number;
  private readonly burst: number;
  constructor(ratePerS: number) {
    this.rate = ratePerS;
    this.burst = Math.max(1, ratePerS * 2);
  }
  /** 0 when allowed, else milliseconds until the next request would be */
  take(key: string, now = performance.now()): number {
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / this.rate) * 1000);
  }
}
