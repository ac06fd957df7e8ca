#!/usr/bin/env -S node --max-semi-space-size=4
// The `myelin` command: runs the compiled CLI (npm run build writes dist/). The V8 flag keeps the young generation
// small (4 MB semi-spaces instead of 16): ~20 MB less resident memory for a few percent more scavenges.
import { main } from "../dist/cli/main.js";

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === "number") process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.message : String(err)); process.exitCode = 1; },
);
