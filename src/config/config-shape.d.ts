// The config schema's shape check, generated at build time from schema.ts by
// scripts/build-config-check.js (Ajv's standalone code) into dist/src/config/config-shape.js:
// a gateway or a client then starts without compiling the schema (≈ 140 ms of CPU per process).
import type { ValidateFunction } from 'ajv';

export declare const validate: ValidateFunction;
