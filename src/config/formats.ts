import { parseDuration, parseSize } from '../core/units.js';

/**
 * The config schema's own string formats: a duration ("1.5s", "250ms") and a size ("64kb").
 * The schema check is compiled from the schema at build time (scripts/build-config-check.js,
 * into dist/src/config/config-shape.js), and calls these from there.
 */
export const CONFIG_FORMATS = {
  duration: { type: 'string', validate: (s: string): boolean => parseDuration(s) !== undefined },
  size: { type: 'string', validate: (s: string): boolean => parseSize(s) !== undefined },
} as const;
