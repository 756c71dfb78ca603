/**
 * Builds the runnable copy of the bundled example plugins: `examples/plugins` → `dist/examples/plugins`.
 *
 * Node refuses to strip types from a file under `node_modules`, so an installed package cannot
 * run the TypeScript example plugins. This copies every plugin folder, turns each `.ts` file
 * into a `.js` file with Node's own type stripping (the TypeScript stays in `examples/` to read),
 * points imports of the library sources (`../../../src/X.ts`) at the built modules in `dist/`,
 * and rewrites each manifest's `executable` and `checksum_sha256` for the built file. Other
 * files (Python, `.mjs`, manifests, READMEs) are copied as they are, file modes included.
 *
 * Run by `npm run build` (so by `npm pack` through `prepack`), after `tsc` has built `dist/`.
 */
import { createHash } from "node:crypto"
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { stripTypeScriptTypes } from "node:module"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..", "..")
const from = import.meta.dirname
const to = path.join(root, "dist", "examples", "plugins")
const sources = path.join(root, "src")
const built = path.join(root, "dist")

/** A relative import of a `.ts` file, as the built `.js` file must say it. */
const rewriteSpecifier = (file: string, specifier: string): string => {
  if (!specifier.startsWith(".") || !specifier.endsWith(".ts")) return specifier
  const target = path.resolve(path.dirname(file), specifier)
  const outFile = path.join(to, path.relative(from, file))
  const outTarget = target.startsWith(sources + path.sep)
    ? path.join(built, path.relative(sources, target))
    : path.join(to, path.relative(from, target))
  const relative = path.relative(path.dirname(outFile), outTarget).replace(/\.ts$/, ".js")
  return relative.startsWith(".") ? relative : `./${relative}`
}

const compile = (file: string): string => {
  // "strip" keeps every line where it was, so stack traces point at the same lines as the source.
  const code = stripTypeScriptTypes(readFileSync(file, "utf8"), { mode: "strip" })
  return code.replace(
    /(\bfrom\s*|\bimport\s*\(\s*)(["'])([^"']+)\2/g,
    (_match, lead: string, quote: string, specifier: string) => `${lead}${quote}${rewriteSpecifier(file, specifier)}${quote}`
  )
}

const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex")

/**
 * A TOML manifest whose executable is a `.ts` file, pointed at the built `.js` file; its
 * `checksum_sha256` and every `"x.ts" = "…"` entry of its `checksums` name and hash the built files.
 */
const rewriteManifest = (text: string, outDir: string): string => {
  const executable = /^executable\s*=\s*"([^"]+)\.ts"\s*$/m.exec(text)
  if (executable === null) return text
  const js = `${executable[1]}.js`
  return text
    .replace(executable[0], `executable = "${js}"`)
    .replace(/^checksum_sha256\s*=\s*"[0-9a-fA-F]*"\s*$/m, `checksum_sha256 = "${sha256(path.join(outDir, js))}"`)
    .replace(/^(checksums\s*=\s*\{)([^}\r\n]*)\}/m, (_line, lead: string, entries: string) =>
      `${lead}${entries.replace(/"([^"]+)\.ts"(\s*=\s*)"[0-9a-fA-F]*"/g, (_entry, stem: string, eq: string) =>
        `"${stem}.js"${eq}"${sha256(path.join(outDir, `${stem}.js`))}"`)}}`)
}

const copyFolder = (dir: string): void => {
  const outDir = path.join(to, path.relative(from, dir))
  mkdirSync(outDir, { recursive: true })
  const entries = readdirSync(dir, { withFileTypes: true })
  // Scripts first: a manifest's checksum is taken of the built executable.
  const files = entries.filter((e) => e.isFile()).sort((a, b) => Number(a.name.endsWith(".toml")) - Number(b.name.endsWith(".toml")))
  for (const entry of files) {
    const file = path.join(dir, entry.name)
    const mode = statSync(file).mode & 0o777
    const out = entry.name.endsWith(".ts") ? path.join(outDir, entry.name.replace(/\.ts$/, ".js")) : path.join(outDir, entry.name)
    const content = entry.name.endsWith(".ts")
      ? compile(file)
      : entry.name.endsWith(".toml")
      ? rewriteManifest(readFileSync(file, "utf8"), outDir)
      : readFileSync(file)
    writeFileSync(out, content)
    chmodSync(out, mode)
  }
  for (const entry of entries) if (entry.isDirectory()) copyFolder(path.join(dir, entry.name))
}

rmSync(to, { recursive: true, force: true })
mkdirSync(to, { recursive: true })
for (const entry of readdirSync(from, { withFileTypes: true })) {
  if (entry.isDirectory()) copyFolder(path.join(from, entry.name))
  else if (entry.name.endsWith(".md")) writeFileSync(path.join(to, entry.name), readFileSync(path.join(from, entry.name)))
}
process.stdout.write(`built the example plugins into ${path.relative(root, to)}\n`)
