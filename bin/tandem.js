#!/usr/bin/env node
// The `tandem` command. The TypeScript build (npm ci runs it through `prepare`) lives in dist/.
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`tandem: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
