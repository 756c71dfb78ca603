/**
 * `plugin-host checksum` (run as a subprocess): hashing files, and keeping manifests' checksums
 * true. A stale checksum is reported by `--check` (exit 1) and rewritten by `--write` so that the
 * manifest verifies again; in TOML only the checksum line changes, comments and layout stay.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash } from "node:crypto"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as ChecksumCommand from "../src/cli/ChecksumCommand.ts"
import * as PluginManifest from "../src/PluginManifest.ts"
import { live, node } from "./support/processes.ts"

const root = path.resolve(import.meta.dirname, "..")
const main = path.join(root, "src/cli/main.ts")

const cli = (args: ReadonlyArray<string>) => {
  const result = spawnSync(node, [main, ...args], { cwd: root, encoding: "utf8", timeout: 20_000 })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** Room for tests that run the command several times on a loaded machine. */
const subprocesses = 60_000

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")
const stale = "0".repeat(64)

const tomlManifest = (checksumLine: string) =>
  [
    "# The `tool` plugin: a comment that must survive.",
    "name = \"tool\"",
    "version = \"1.0.0\"",
    "",
    "# where it lives",
    "executable = \"tool.sh\"   # next to this file",
    checksumLine,
    "allowed_env_vars = [\"PATH\"] # trailing comment",
    ""
  ].join("\n")

/** Whether the manifest loads and verifies (checksum included) through the library. */
const verifies = (file: string) =>
  Effect.runPromise(
    PluginManifest.load(file).pipe(
      Effect.flatMap((manifest) => PluginManifest.verify(manifest, path.dirname(file), { manifestPath: file })),
      Effect.as(true),
      Effect.catch(() => Effect.succeed(false)),
      Effect.provide(live)
    )
  )

describe("plugin-host checksum", () => {
  const dirs: Array<string> = []
  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
  })
  /** A plugin folder `<tmp>/tool` holding `tool.sh` and the given files. */
  const pluginFolder = (files: Record<string, string>) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-checksum-"))
    dirs.push(dir)
    const folder = path.join(dir, "tool")
    fs.mkdirSync(folder)
    fs.writeFileSync(path.join(folder, "tool.sh"), "#!/bin/sh\necho tool\n", { mode: 0o755 })
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(folder, name), text)
    return { dir, folder, actual: sha256("#!/bin/sh\necho tool\n") }
  }

  it("checksum FILE... prints `<sha256>  FILE` per file; a missing file is a usage error (exit 2)", () => {
    const { folder, actual } = pluginFolder({})
    const file = path.join(folder, "tool.sh")
    const ok = cli(["checksum", file, file])
    assert.strictEqual(ok.code, 0, ok.stderr)
    assert.strictEqual(ok.stdout, `${actual}  ${file}\n${actual}  ${file}\n`)
    const missing = cli(["checksum", path.join(folder, "nope.sh")])
    assert.strictEqual(missing.code, 2)
    assert.include(missing.stderr, "no such file or directory")
  }, subprocesses)

  it("--check reports a stale checksum (exit 1); --write replaces only that line and the manifest verifies", async () => {
    const original = tomlManifest(`checksum_sha256 = "${stale}"`)
    const { actual, dir, folder } = pluginFolder({ "tool.toml": original })
    const manifest = path.join(folder, "tool.toml")
    assert.isFalse(await verifies(manifest))

    const check = cli(["checksum", "--check", dir])
    assert.strictEqual(check.code, 1, check.stdout)
    assert.include(check.stderr, `tool/tool.toml: checksum is ${stale}, tool.sh hashes to ${actual}`)
    assert.strictEqual(fs.readFileSync(manifest, "utf8"), original, "--check must not write")

    const write = cli(["checksum", "--write", manifest])
    assert.strictEqual(write.code, 0, write.stderr)
    assert.match(write.stdout, new RegExp(`^updated {2}\\S*tool/tool\\.toml {2}${actual}$`, "m"))
    assert.strictEqual(fs.readFileSync(manifest, "utf8"), tomlManifest(`checksum_sha256 = "${actual}"`))
    assert.isTrue(await verifies(manifest))

    const again = cli(["checksum", "--check", manifest])
    assert.strictEqual(again.code, 0, again.stderr)
    assert.include(again.stdout, "every checksum is up to date")
  }, subprocesses)

  it("--write adds a missing checksum after `executable` (TOML) and sets `checksumSha256` (JSON)", async () => {
    const json = { name: "tool", version: "1.0.0", executable: "tool.sh", allowedEnvVars: ["PATH"] }
    const { actual, dir, folder } = pluginFolder({
      "tool.toml": tomlManifest("# no checksum yet"),
      "other-tool.json": JSON.stringify(json)
    })
    const write = cli(["checksum", "--write", dir])
    assert.strictEqual(write.code, 0, write.stderr)
    assert.strictEqual(
      fs.readFileSync(path.join(folder, "tool.toml"), "utf8"),
      tomlManifest(`checksum_sha256 = "${actual}"\n# no checksum yet`)
    )
    const rewritten: unknown = JSON.parse(fs.readFileSync(path.join(folder, "other-tool.json"), "utf8"))
    assert.deepStrictEqual(rewritten, { ...json, checksumSha256: actual })
    const keys = typeof rewritten === "object" && rewritten !== null ? Object.keys(rewritten) : []
    assert.deepStrictEqual(keys, ["name", "version", "executable", "checksumSha256", "allowedEnvVars"], "the checksum goes after `executable`")
    assert.isTrue(await verifies(path.join(folder, "tool.toml")))
    assert.isTrue(await verifies(path.join(folder, "other-tool.json")))
  }, subprocesses)

  it("--write reports a manifest it cannot use and still updates the others (exit 1)", () => {
    const { actual, dir, folder } = pluginFolder({
      "tool.toml": tomlManifest(`checksum_sha256 = "${stale}"`),
      "broken.toml": "name = \"broken\"\nversion = \"1\"\nexecutable = \"gone.sh\"\n"
    })
    const write = cli(["checksum", "--write", dir])
    assert.strictEqual(write.code, 1)
    assert.include(write.stderr, "1 manifest(s) need attention")
    assert.include(write.stderr, "gone.sh does not exist")
    assert.include(fs.readFileSync(path.join(folder, "tool.toml"), "utf8"), `checksum_sha256 = "${actual}"`)
  }, subprocesses)

  it("--write and --check together, or a folder without manifests, fail", () => {
    const { dir, folder } = pluginFolder({})
    assert.strictEqual(cli(["checksum", "--write", "--check", dir]).code, 2)
    const empty = cli(["checksum", "--check", folder])
    assert.strictEqual(empty.code, 1)
    assert.include(empty.stderr, `no manifest found in ${folder}`)
  }, subprocesses)

  it("withChecksum keeps CRLF line endings and replaces a single-quoted checksum in place", () => {
    const crlf = "name = \"tool\"\r\nexecutable = \"tool.sh\"\r\nversion = \"1\"\r\n"
    assert.strictEqual(
      ChecksumCommand.withChecksum(crlf, "tool.toml", "ab"),
      "name = \"tool\"\r\nexecutable = \"tool.sh\"\r\nchecksum_sha256 = \"ab\"\r\nversion = \"1\"\r\n"
    )
    assert.strictEqual(
      ChecksumCommand.withChecksum("executable = 'x'\n  checksum_sha256 = 'old' # keep\n", "x.toml", "ab"),
      "executable = 'x'\n  checksum_sha256 = \"ab\" # keep\n"
    )
    assert.isUndefined(ChecksumCommand.withChecksum("[1, 2]", "x.json", "ab"))
  })
  it("--check reports a stale `checksums` entry naming it; --write replaces only its digest, and a manifest pinning its executable there needs no checksum_sha256", async () => {
    const original = [
      "name = \"tool\"",
      "version = \"1.0.0\"",
      "executable = \"tool.sh\"",
      `checksums = { "tool.sh" = "${stale}", "lib.sh" = "${sha256("lib\n")}" } # both verified in place`,
      ""
    ].join("\n")
    const { actual, folder } = pluginFolder({ "tool.toml": original, "lib.sh": "lib\n" })
    const manifest = path.join(folder, "tool.toml")
    const check = cli(["checksum", "--check", manifest])
    assert.strictEqual(check.code, 1, check.stdout)
    assert.include(check.stderr, `tool/tool.toml: checksums entry \`tool.sh\` is ${stale}, it hashes to ${actual}`)
    assert.notInclude(check.stderr, "lib.sh")
    assert.notInclude(check.stderr, "checksum is missing")
    const write = cli(["checksum", "--write", manifest])
    assert.strictEqual(write.code, 0, write.stderr)
    assert.strictEqual(fs.readFileSync(manifest, "utf8"), original.replace(stale, actual))
    assert.isTrue(await verifies(manifest))
    fs.appendFileSync(path.join(folder, "lib.sh"), "edited\n")
    assert.isFalse(await verifies(manifest), "an edited lib.sh fails verification")
  }, subprocesses)

  it("withFileChecksum replaces one entry's digest, quoted or bare, in TOML and JSON, and nothing else", () => {
    const toml = `args = ["a.py"]\n[checksums]\n"a.py" = "old"\nb = 'old'\n"xa.py" = "old"\n`
    assert.strictEqual(
      ChecksumCommand.withFileChecksum(toml, "x.toml", "a.py", "ab"),
      `args = ["a.py"]\n[checksums]\n"a.py" = "ab"\nb = 'old'\n"xa.py" = "old"\n`
    )
    assert.strictEqual(ChecksumCommand.withFileChecksum(toml, "x.toml", "b", "ab"), toml.replace("b = 'old'", "b = \"ab\""))
    assert.isUndefined(ChecksumCommand.withFileChecksum(toml, "x.toml", "c.py", "ab"))
    const json = JSON.stringify({ name: "x", checksums: { "a.py": "old" } })
    assert.deepStrictEqual(JSON.parse(ChecksumCommand.withFileChecksum(json, "x.json", "a.py", "ab") ?? "null"), { name: "x", checksums: { "a.py": "ab" } })
    assert.isUndefined(ChecksumCommand.withFileChecksum(json, "x.json", "toString", "ab"))
  })
})
