/**
 * import: a fresh Node process imports a module; the time the `import()` takes (ms), the CPU time
 * the process spends in it (`cpuMs`, all threads: steadier than wall time on a loaded machine)
 * and the process RSS afterwards (MB). The samples of one round are taken in fresh processes one after
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
 * - `effect-schema`: `effect/Effect` and `effect/Schema`: what any module of the library loads
 *   at least, its error classes being `Schema.TaggedError`s.
 * - `effect-floor`: exactly the `effect` modules that `src/index.ts` as JS loads, and nothing of
 *   ours (one generated module importing them; the list is taken at the start of the measurement
 *   by a fresh process with a `module.registerHooks` load hook). `effect-js` minus this is what
 *   our own modules cost.
 * - `effect-prebundle`: `src/index.ts` pre-bundled by rolldown with `effect` external
 *   (`lib/bundleBuild.ts`): the same code in a handful of modules instead of ~70.
 */
import { execFile, execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { benchDir, median, node, rootDir, round } from "../lib/common.ts"
import { ensurePrebundle, prebundlePath } from "../lib/bundleBuild.ts"
import { ensureJs, jsPath } from "../lib/jsBuild.ts"


const floorPath = path.join(benchDir, ".cache", "import-floor.mjs")

/** Writes the `effect-floor` module: a static import of each `effect` module `src/index.ts` (JS) loads. */
const writeFloor = (): string => {
  const lister = `
    import { registerHooks } from "node:module"
    const loaded = []
    registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context) } })
    await import(${JSON.stringify(pathToFileURL(jsPath("src/index.ts")).href)})
    process.stdout.write(JSON.stringify(loaded.filter((url) => url.includes("/node_modules/effect/"))))
  `
  const urls: Array<string> = JSON.parse(execFileSync(node, ["--input-type=module", "--no-warnings", "-e", lister], { cwd: rootDir, encoding: "utf8" }))
  fs.writeFileSync(floorPath, urls.map((url) => `import ${JSON.stringify(url)}\n`).join(""))
  return floorPath
}

const targets: Record<string, () => string> = {
  effect: () => path.join(rootDir, "src/index.ts"),
  "effect-js": () => jsPath("src/index.ts"),
  "effect-worker": () => path.join(rootDir, "src/PluginWorker.ts"),
  "effect-worker-js": () => jsPath("src/PluginWorker.ts"),
  "effect-core": () => "effect/Effect",
  "effect-schema": () => "effect/Schema",
  "effect-floor": writeFloor,
  "effect-prebundle": () => prebundlePath
}

export const counts = (quick: boolean) => ({ samples: quick ? 5 : 7 })

const script = (specifier: string) => `
const started = performance.now()
const cpuAtStart = process.cpuUsage()
await import(${JSON.stringify(specifier)})
const ms = performance.now() - started
const cpu = process.cpuUsage(cpuAtStart)
process.stdout.write(JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000, sinceStartMs: performance.now(), rssMb: process.memoryUsage.rss() / 2 ** 20 }))
`

const sample = (specifier: string) =>
  new Promise<{ ms: number; cpuMs: number; sinceStartMs: number; rssMb: number }>((resolve, reject) => {
    execFile(node, ["--input-type=module", "--no-warnings", "-e", script(specifier)], { cwd: rootDir, timeout: 60_000 }, (error, stdout) => {
      if (error) reject(error)
      else resolve(JSON.parse(stdout))
    })
  })

export const run = async (variant: string, quick: boolean) => {
  const target = targets[variant]
  if (target === undefined) throw new Error(`unknown variant ${variant}`)
  ensureJs()
  if (variant === "effect-prebundle") await ensurePrebundle()
  const specifier = target()
  const samples = []
  for (let i = 0; i < counts(quick).samples; i++) samples.push(await sample(specifier))
  return {
    ms: round(Math.min(...samples.map((s) => s.ms))),
    medianMs: round(median(samples.map((s) => s.ms))),
    cpuMs: round(median(samples.map((s) => s.cpuMs))),
    sinceStartMs: round(median(samples.map((s) => s.sinceStartMs))),
    rssMb: round(median(samples.map((s) => s.rssMb)))
  }
}
