#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's built-in test runner.
// Usage: node scripts/test.js [name-filter ...]   (filters match file names)
import { readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const testDir = join(root, 'dist', 'test');

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...walk(full));
    else if (name.endsWith('.test.js')) out.push(full);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk(testDir).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error(`no test files found under ${relative(root, testDir)} (did the build run?)`);
  process.exit(1);
}
const args = ['--test', '--test-reporter=spec', '--test-concurrency=' + (process.env.TANDEM_TEST_CONCURRENCY ?? '3'), ...files];
// Node ≥ 22.1 keeps the compiled code of every module the test processes, their gateways and
// instances load, and reuses it in the next process (hundreds start per run); Node 20 ignores it.
const env = { ...process.env, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), 'tandem-test-compile-cache') };
const result = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root, env });
process.exit(result.status ?? 1);
