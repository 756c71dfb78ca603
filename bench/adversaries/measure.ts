/**
 * One adversary in a fresh process: `adversaries/measure.ts <name> [--quick]`. Prints its result
 * as one line `BENCH_RESULT <json>` on stdout; `adversaries.ts` starts one of these per adversary.
 */
import { adversaries } from "./index.ts"

const [name] = process.argv.slice(2)
const quick = process.argv.includes("--quick")
const adversary = adversaries.find((a) => a.name === name)
if (adversary === undefined) {
  process.stderr.write(`usage: adversaries/measure.ts <name> [--quick]\n  names: ${adversaries.map((a) => a.name).join(", ")}\n`)
  process.exit(2)
}
const result = await (await adversary.load()).run(adversary.name, quick)
process.stdout.write(`BENCH_RESULT ${JSON.stringify(result)}\n`)
// Anything still holding the event loop open (a stray handle) must not hang the harness.
process.exit(0)
