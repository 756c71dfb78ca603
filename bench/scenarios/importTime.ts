/**
 * import: a fresh Node process imports a module; the time the `import()` takes (ms) and the
 * process RSS afterwards (MB). The samples of one round are taken in fresh processes one after
 * another; `ms` is the fastest of them (the machine's other load only ever adds time to an
 * import, so the fastest is the best estimate of its own cost), `medianMs` is beside it, the
 * other figures are medians.
 *
 * - `effect`: `effect-plugin-host` from source (`src/index.ts`, through Node's type stripping),
 *   reported as `importMsSource`.
 * - `effect-js`: the same from the plain-JS copy of the current `src/` (`lib/jsBuild.ts`): what
 *   `import "effect-plugin-host"` loads (the package's exports point at `dist/*.js`), the goal's
 *   `importMs`. (`dist/` is not used: it may be older than `src/`.)
 * - `effect-worker`, `effect-worker-js`: the worker SDK entry (`src/PluginWorker.ts`), from
 *   source and as JS.
 * - `effect-core`: `effect/Effect` alone, for scale.
 */
import { execFile } from "node:child_process"
import * as path from "node:path"
import { median, node, rootDir, round } from "../lib/common.ts"
import { ensureJs, jsPath } from "../lib/jsBuild.ts"


const targets: Record<string, string> = {
  effect: path.join(rootDir, "src/index.ts"),
  "effect-js": jsPath("src/index.ts"),
  "effect-worker": path.join(rootDir, "src/PluginWorker.ts"),
  "effect-worker-js": jsPath("src/PluginWorker.ts"),
  "effect-core": "effect/Effect"
}

export const counts = (quick: boolean) => ({ samples: quick ? 5 : 7 })

const script = (specifier: string) => `
const started = performance.now()
await import(${JSON.stringify(specifier)})
const ms = performance.now() - started
process.stdout.write(JSON.stringify({ ms, sinceStartMs: performance.now(), rssMb: process.memoryUsage.rss() / 2 ** 20 }))
`

const sample = (specifier: string) =>
  new Promise<{ ms: number; sinceStartMs: number; rssMb: number }>((resolve, reject) => {
    execFile(node, ["--input-type=module", "--no-warnings", "-e", script(specifier)], { cwd: rootDir, timeout: 60_000 }, (error, stdout) => {
      if (error) reject(error)
      else resolve(JSON.parse(stdout))
    })
  })

export const run = async (variant: string, quick: boolean) => {
  const specifier = targets[variant]
  if (specifier === undefined) throw new Error(`unknown variant ${variant}`)
  ensureJs()
  const samples = []
  for (let i = 0; i < counts(quick).samples; i++) samples.push(await sample(specifier))
  return {
    ms: round(Math.min(...samples.map((s) => s.ms))),
    medianMs: round(median(samples.map((s) => s.ms))),
    sinceStartMs: round(median(samples.map((s) => s.sinceStartMs))),
    rssMb: round(median(samples.map((s) => s.rssMb)))
  }
}
