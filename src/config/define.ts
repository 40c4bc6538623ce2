import type { GatewayConfigInput } from './schema.js';

/**
 * Returns `config` as it is. Its only work is done by the compiler: a config written in
 * TypeScript (`tandem.config.ts`, a test) is checked against the schema's own type, so a
 * misspelled key or a wrong value type is an error in the editor, before validateConfig()
 * checks the rest (addresses, units, cross references) at run time.
 */
export function defineConfig(config: GatewayConfigInput): GatewayConfigInput {
  return config;
}
