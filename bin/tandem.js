#!/usr/bin/env node
// The `tandem` command. It runs the TypeScript build in dist/: the published package ships it;
// in a clone of the repository `npm run build` makes it (`npm start` and `npm test` build first).
import { existsSync } from 'node:fs';
import module from 'node:module';

// Node ≥ 22.1: V8's compiled code for what the command loads is kept on disk (in the system's
// temp dir) and reused by the next start — a gateway or a CLI command starts in about half the
// CPU. Node 20 has no such cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('tandem: dist/ is missing; in a clone of the repository, run `npm run build` first\n');
  process.exit(1);
}
const { main } = await import(entry.href);

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`tandem: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
