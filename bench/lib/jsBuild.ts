/**
 * A plain-JavaScript copy of the current `src/` (and of the PluginWorker bench worker) in
 * `bench/.cache/js/`, made with Node's own `module.stripTypeScriptTypes`: what a build would
 * load, minus the type-stripping work Node does on every start when it runs `.ts` directly.
 * The import and worker cold-start scenarios measure both, so the cost of the library is not
 * confused with the cost of running it from source. The copy mirrors the project layout, so
 * relative imports and `node_modules` resolve as in the original.
 */
import * as fs from "node:fs"
import { stripTypeScriptTypes } from "node:module"
import * as path from "node:path"
import { benchDir, rootDir } from "./common.ts"

export const jsRoot = path.join(benchDir, ".cache", "js")

/** The JS entry points, by the original's path relative to the project root. */
export const jsPath = (relative: string) => path.join(jsRoot, relative.replace(/\.ts$/, ".js"))

/** Relative `.ts` specifiers (static and dynamic imports, re-exports) become `.js`. */
const rewriteSpecifiers = (code: string) =>
  code.replace(/((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']+)\.ts(["'])/g, "$1$2.js$3")

const listTs = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return listTs(full)
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [full] : []
  })

/** (Re)builds the copy from the current sources. Takes a few hundred ms. */
export const buildJs = (): void => {
  // `stripTypeScriptTypes` announces itself as experimental once per process; that is noise here.
  const emitWarning = process.emitWarning
  process.emitWarning = () => {}
  try {
    build()
  } finally {
    process.emitWarning = emitWarning
  }
}

const build = () => {
  fs.rmSync(jsRoot, { recursive: true, force: true })
  const files = [...listTs(path.join(rootDir, "src")), path.join(benchDir, "workers", "plugin-worker.ts")]
  for (const file of files) {
    const relative = path.relative(rootDir, file)
    const code = rewriteSpecifiers(stripTypeScriptTypes(fs.readFileSync(file, "utf8"), { mode: "strip" }))
    const out = jsPath(relative)
    fs.mkdirSync(path.dirname(out), { recursive: true })
    fs.writeFileSync(out, code)
  }
  // Mark the copy as ES modules, like the package.
  fs.writeFileSync(path.join(jsRoot, "package.json"), JSON.stringify({ type: "module" }) + "\n")
}

/** Builds the copy if it is missing. */
export const ensureJs = (): void => {
  if (!fs.existsSync(path.join(jsRoot, "package.json"))) buildJs()
}
