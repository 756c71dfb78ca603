/**
 * The package as a user installs it, not as this repository runs it: `npm pack` (which builds
 * `dist/` through `prepare`), then a fresh app outside the repository that installs the tarball
 * with exactly the README's install commands, next to its own `effect`. In that app: one copy
 * of `effect` in the tree, a strict TypeScript consumer (`skipLibCheck: false`) that hosts a
 * plugin through `PluginClient` and `PluginManager` layers typechecks and runs, the installed
 * `plugin-host` checks the bundled example plugins (all healthy), and every TypeScript block of
 * the README typechecks against the installed package, the marked ones also run.
 *
 * README markers (an HTML comment on the line before a fenced block): `test:install` runs the
 * block's `npm install` lines with the tarball in place of `effect-plugin-host`; `test:sh` runs
 * each line; `test:run` runs a TypeScript block with Node; `test:vitest` runs it with vitest.
 * Unmarked TypeScript blocks are typechecked only.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type CodeBlock, codeBlocks, type Outcome, processesUnder, run, sh } from "./support/packaging.ts"

const root = path.resolve(import.meta.dirname, "..")
const consumer = path.join(import.meta.dirname, "fixtures", "consumer")
const readme = codeBlocks(fs.readFileSync(path.join(root, "README.md"), "utf8"))
const minutes = (n: number) => n * 60_000

const show = (what: string, outcome: Outcome) =>
  `${what} exited ${outcome.code}\n--- stdout\n${outcome.stdout.slice(-4_000)}\n--- stderr\n${outcome.stderr.slice(-4_000)}`

const expectOk = (what: string, outcome: Outcome): Outcome => {
  assert.strictEqual(outcome.code, 0, show(what, outcome))
  return outcome
}

/** Each `npm install` line of the README's install blocks. */
const installLines = readme
  .filter((b) => b.marker === "install")
  .flatMap((b) => b.code.split("\n").map((l) => l.replace(/#.*$/, "").trim()).filter((l) => l.startsWith("npm install")))

/** A README TypeScript block's file in the app: vitest finds `*.test.ts`. */
const blockFile = (block: CodeBlock) => `readme/line-${block.line}${block.marker === "vitest" ? ".test" : ""}.ts`

/** The effect packages in an app's tree: the folder of each `effect/package.json` under node_modules. */
const effectCopies = (dir: string): Array<string> => {
  const found: Array<string> = []
  const walk = (modules: string) => {
    if (!fs.existsSync(modules)) return
    for (const entry of fs.readdirSync(modules)) {
      const folder = path.join(modules, entry)
      if (entry.startsWith("@")) {
        for (const scoped of fs.readdirSync(folder)) walk(path.join(folder, scoped, "node_modules"))
        continue
      }
      if (entry === "effect") found.push(folder)
      walk(path.join(folder, "node_modules"))
    }
  }
  walk(path.join(dir, "node_modules"))
  return found
}

describe("the installed package", () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-pack-"))
  const app = path.join(work, "app")
  let tarball = ""
  let packed: ReadonlyArray<{ readonly path: string; readonly mode: number }> = []

  beforeAll(async () => {
    const pack = expectOk("npm pack", await run("npm", ["pack", "--json", "--pack-destination", work], { cwd: root, timeoutMs: minutes(3) }))
    // `prepare`'s own output (the build) comes first; the JSON report is the last thing printed.
    const report: Array<{ filename: string; files: Array<{ path: string; mode: number }> }> = JSON.parse(
      pack.stdout.slice(pack.stdout.search(/^\[/m))
    )
    tarball = path.join(work, report[0]?.filename ?? "missing.tgz")
    packed = report[0]?.files ?? []

    fs.mkdirSync(app)
    fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }, null, 2))
    assert.isAbove(installLines.length, 0, "the README has an install block marked <!-- test:install -->")
    for (const line of installLines) {
      const command = line.replace(/(\s)effect-plugin-host(?=\s|$)/, `$1${tarball}`)
      expectOk(command, await sh(`${command} --prefer-offline`, app, minutes(5)))
    }
    for (const file of ["host.ts", "greeter.mjs", "tsconfig.json"]) fs.copyFileSync(path.join(consumer, file), path.join(app, file))
    fs.mkdirSync(path.join(app, "greeter"))
    fs.renameSync(path.join(app, "greeter.mjs"), path.join(app, "greeter", "greeter.mjs"))
    fs.chmodSync(path.join(app, "greeter", "greeter.mjs"), 0o755)
    fs.mkdirSync(path.join(app, "readme"))
    for (const block of readme.filter((b) => b.language === "ts")) fs.writeFileSync(path.join(app, blockFile(block)), `${block.code}\n`)
  }, minutes(12))

  afterAll(() => {
    fs.rmSync(work, { recursive: true, force: true })
  })

  it("the tarball carries dist with declarations and maps, the sources, and runnable example plugins", () => {
    const files = new Map(packed.map((f) => [f.path, f.mode]))
    for (const file of ["dist/index.js", "dist/index.d.ts", "dist/index.d.ts.map", "dist/index.js.map", "dist/cli/main.js", "dist/testing/index.d.ts", "src/index.ts", "README.md"]) {
      assert.isTrue(files.has(file), `${file} is in the tarball`)
    }
    for (const script of ["dist/examples/plugins/echo/echo.js", "dist/examples/plugins/calendar/calendar.js", "dist/examples/plugins/flaky/flaky.mjs", "dist/examples/plugins/secrets/secret_source.py"]) {
      assert.strictEqual((files.get(script) ?? 0) & 0o111, 0o111, `${script} is in the tarball and executable`)
    }
    assert.isFalse(packed.some((f) => f.path.startsWith("test/") || f.path.startsWith("bench/")), "no tests or benchmarks in the tarball")
  })

  it("the app holds one copy of effect: the user's, which the library shares", () => {
    const copies = effectCopies(app)
    assert.deepStrictEqual(copies, [path.join(app, "node_modules", "effect")])
    const installed = JSON.parse(fs.readFileSync(path.join(app, "node_modules", "effect-plugin-host", "package.json"), "utf8"))
    assert.isUndefined(installed.dependencies?.effect, "effect is a peer dependency, never a dependency")
    assert.isString(installed.peerDependencies?.effect)
  })

  it("a strict consumer and every README TypeScript block typecheck against the installed package (skipLibCheck: false)", async () => {
    expectOk("tsc", await run(path.join(app, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], { cwd: app, timeoutMs: minutes(3) }))
  }, minutes(4))

  it("the consumer hosts its plugin through a PluginClient layer and the PluginManager layer", async () => {
    const checksum = expectOk("plugin-host checksum", await sh("npx plugin-host checksum greeter/greeter.mjs", app))
    const sum = checksum.stdout.split(/\s+/)[0] ?? ""
    assert.match(sum, /^[0-9a-f]{64}$/)
    fs.writeFileSync(
      path.join(app, "greeter", "greeter.toml"),
      // The script imports packages found by walking up from its own folder: it is verified in
      // place (`checksums`), not run from the verified copy `checksum_sha256` would run.
      [`name = "greeter"`, `version = "1.0.0"`, `executable = "greeter.mjs"`, `allowed_env_vars = ["PATH"]`, `[checksums]`, `"greeter.mjs" = "${sum}"`].join("\n")
    )
    const host = expectOk("node host.ts", await run(process.execPath, ["host.ts"], { cwd: app, timeoutMs: minutes(1) }))
    assert.deepStrictEqual(JSON.parse(host.stdout.trim()), { direct: "hello, client", managed: "hello, manager", state: "Running" })
    assert.deepStrictEqual(processesUnder(app), [], "no plugin outlives the consumer")
  }, minutes(2))

  it("the installed plugin-host finds the bundled examples, and doctor --json reports every one healthy", async () => {
    const examples = expectOk("plugin-host examples", await sh("npx plugin-host examples", app)).stdout.trim()
    assert.strictEqual(examples, path.join(app, "node_modules", "effect-plugin-host", "dist", "examples", "plugins"))
    const doctor = expectOk("plugin-host doctor", await sh(`npx plugin-host doctor --json --dir "${examples}"`, app, minutes(2)))
    const report: { plugins: Array<{ id: string; status: string }> } = JSON.parse(doctor.stdout)
    assert.deepStrictEqual(
      report.plugins.map((p) => [p.id, p.status]).sort(),
      ["calendar", "echo", "flaky", "rss-poller", "secrets"].map((id) => [id, "Healthy"])
    )
    assert.deepStrictEqual(processesUnder(app), [], "doctor stops every plugin it started")
  }, minutes(3))

  it("the installed guided demo runs every step on the bundled JavaScript plugins, and --version is the package's", async () => {
    const demo = expectOk("plugin-host demo", await sh("npx plugin-host demo", app, minutes(2)))
    for (const step of ["2. Lazy spawn", "3. Calls both ways", "4. A crash", "6. Idle reaping", "7. An ephemeral poller", "8. The doctor"]) {
      assert.include(demo.stdout, step)
    }
    assert.include(demo.stdout, "sum [1, 2, 3, 4] → 10")
    assert.include(demo.stdout, "Done in")
    const version = expectOk("plugin-host --version", await sh("npx plugin-host --version", app))
    const own = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"))
    assert.strictEqual(version.stdout.trim(), `plugin-host v${own.version}`)
    assert.deepStrictEqual(processesUnder(app), [], "the demo stops every plugin it started")
  }, minutes(3))

  it("in the repository, npm exec plugin-host runs the built command", async () => {
    const examples = expectOk("npm exec plugin-host", await run("npm", ["exec", "--", "plugin-host", "examples"], { cwd: root, timeoutMs: minutes(1) }))
    assert.strictEqual(examples.stdout.trim(), path.join(root, "dist", "examples", "plugins"))
  }, minutes(2))

  it("the README's shell and TypeScript blocks marked to run, run", async () => {
    const runnable = readme.filter((b) => b.marker === "sh" || b.marker === "run" || b.marker === "vitest")
    assert.isAbove(runnable.length, 0)
    for (const block of runnable) {
      if (block.marker === "sh") {
        for (const line of block.code.split("\n").map((l) => l.replace(/\s#.*$/, "").trim()).filter((l) => l !== "" && !l.startsWith("#"))) {
          expectOk(`README line ${block.line}: ${line}`, await sh(line, app, minutes(2)))
        }
      } else if (block.marker === "run") {
        expectOk(`README block at line ${block.line}`, await run(process.execPath, [blockFile(block)], { cwd: app, timeoutMs: minutes(1) }))
      } else {
        expectOk(`README block at line ${block.line} (vitest)`, await sh(`npx vitest run ${blockFile(block)}`, app, minutes(2)))
      }
    }
    assert.deepStrictEqual(processesUnder(app), [], "no README program leaves a process behind")
  }, minutes(8))
})
