#!/usr/bin/env -S node --max-semi-space-size=4 --v8-pool-size=1
// The `myelin` command: runs the compiled CLI (npm run build writes dist/). The V8 flags keep the young generation
// small (4 MB semi-spaces instead of 16: ~20 MB less resident memory for a few percent more scavenges) and V8's
// helper threads to one (~6 MB less; the server's work is on the main thread). On a machine with many cores,
// `node --v8-pool-size=4 bin/myelin.js ...` gives the garbage collector more threads.
import { main } from "../dist/cli/main.js";

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === "number") process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.message : String(err)); process.exitCode = 1; },
);
