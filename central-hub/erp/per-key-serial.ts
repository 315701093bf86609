/**
 * Runs calls that share a key one at a time, in call order; calls with different keys run in parallel.
 * Used per production order: D365 processes an order's messages in arrival order, and Odoo's quantities
 * are read-modify-write. Memory stays bounded: a key's entry is removed when its last call ends.
 */
export class PerKeySerial {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.#tails.set(key, tail);
    try {
      await prev;
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  get size(): number {
    return this.#tails.size;
  }
}
