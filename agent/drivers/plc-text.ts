/**
 * PLC strings are often fixed-length buffers padded with NUL (a 40-character order tag holding "4711"
 * reads as "4711" and 36 NULs). The padding means "nothing here" at the PLC, so the drivers that read
 * PLC strings (OPC UA, Sparkplug B) remove it before anything is derived from the value. A NUL anywhere
 * else is kept: it is not padding, and the hub refuses it in a transaction (the wire text rule,
 * contracts/wire-text.ts), so it shows up as a dead letter instead of being guessed at.
 */
export function trimPlcPadding(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0) end--;
  return end === s.length ? s : s.slice(0, end);
}
