import { z } from 'zod';

/** Driver instance names appear in signal sources, metrics labels and file names: keep them tame. */
export const driverName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a short name of lowercase letters, digits and dashes, e.g. line7-plc');
