/**
 * One measurement in a fresh process: `measure.ts <scenario> <variant> [--quick]`. Prints its
 * result as one line `BENCH_RESULT <json>` on stdout. `run.ts` starts one of these per scenario,
 * variant and round, so no measurement inherits another's heap, JIT state or leftovers.
 *
 * Run it alone to profile one variant, e.g.
 * `node --cpu-prof --cpu-prof-dir=bench/profiles bench/measure.ts throughput effect --quick`.
 */
import { scenarios } from "./scenarios/index.ts"

const [name, variant] = process.argv.slice(2)
const quick = process.argv.includes("--quick")
const scenario = scenarios.find((s) => s.name === name)
if (scenario === undefined || variant === undefined || !scenario.variants.includes(variant)) {
  process.stderr.write(`usage: measure.ts <scenario> <variant> [--quick]\n`)
  for (const s of scenarios) process.stderr.write(`  ${s.name}: ${s.variants.join(", ")}\n`)
  process.exit(2)
}
const result = await (await scenario.load()).run(variant, quick)
process.stdout.write(`BENCH_RESULT ${JSON.stringify(result)}\n`)
// Anything still holding the event loop open (a stray handle) must not hang the harness.
process.exit(0)
