import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { PlantBridgeError, issuesToText, nonEmpty, validate, type Issue } from '../../contracts/index.ts';

/**
 * Strict query and path parameters (issue #22): every route names the parameters it takes; an unknown one,
 * one given twice (`?plant=1010&plant=2020`) or one of the wrong form is a 400 SCHEMA_INVALID naming it,
 * never a value the store chokes on (a 500) or one that means something else (`0x4e` read as 78).
 */
export function strictParams<S extends z.ZodType>(schema: S, value: unknown, req: FastifyRequest): z.infer<S> {
  const repeated: Issue[] = [];
  if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) if (Array.isArray(v)) repeated.push({ path: k, message: 'given more than once' });
  if (repeated.length) throw new PlantBridgeError('SCHEMA_INVALID', issuesToText(repeated), { details: repeated, correlationId: req.id });
  const v = validate(schema, value ?? {});
  if (!v.ok) throw new PlantBridgeError('SCHEMA_INVALID', issuesToText(v.issues), { details: v.issues, correlationId: req.id });
  return v.value;
}

/** a decimal count between 1 and max: digits only (no sign, no 0x, no exponent) */
export const countParam = (max: number) =>
  z
    .string()
    .regex(/^[1-9]\d{0,8}$/, `expected a whole number from 1 to ${max}`)
    .transform(Number)
    .refine((n) => n <= max, `expected a whole number from 1 to ${max}`);

/** a sequence number as `list` shows it: digits only, below 2^53 */
export const seqParam = z.string().regex(/^[1-9]\d{0,14}$/, 'expected a positive whole number (digits only)').transform(Number);

export const plantParam = nonEmpty(64);
