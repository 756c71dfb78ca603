import { assert, describe, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as Schema from "effect/Schema"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as PluginManifest from "../src/PluginManifest.ts"

const fixtures = path.resolve(import.meta.dirname, "fixtures/manifests")

/** A fresh folder under the OS temp dir, removed when the test's Scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "plugin-manifest-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Writes `content` at `dir/relative`, creating folders; returns the absolute path. */
const write = (dir: string, relative: string, content: string | Uint8Array): string => {
  const file = path.join(dir, relative)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, content)
  return file
}

const sha256 = (content: string | Uint8Array): string => createHash("sha256").update(content).digest("hex")

/** The error a manifest operation failed with (fails the test when it succeeded). */
const failure = <A, R>(effect: Effect.Effect<A, PluginManifest.ManifestError, R>) =>
  Effect.flip(effect)

const parseError = (text: string, file: string) => failure(PluginManifest.parse(text, file))

/** The `detail` of an `Invalid` reason (fails the test for any other outcome). */
const invalidDetail = (text: string, file: string) =>
  parseError(text, file).pipe(Effect.map((error) => {
    assert.strictEqual(error.reason._tag, "Invalid", error.message)
    assert.strictEqual(error.path, file)
    return error.reason._tag === "Invalid" ? error.reason.detail : ""
  }))

const minimalToml = `name = "vault"\nversion = "1.0.0"\nexecutable = "bin/vault"\n`
const pollerToml = (lines: string) => `${minimalToml}[poller]\n${lines}\n`

describe("PluginManifest", () => {
  describe("TOML", () => {
    it.effect("reads every field, including the poller section", () =>
      Effect.gen(function*() {
        const text = [
          `name = "vault"`,
          `version = "1.4.2"`,
          `executable = "bin/devboy-vault"`,
          `args = ["--stdio", "-v"]`,
          `allowed_env_vars = ["VAULT_ADDR", "VAULT_TOKEN"]`,
          `checksum_sha256 = "${"ab".repeat(32)}"`,
          `[poller]`,
          `kinds = ["gh_issues", "gh_prs2"]`,
          `broker_topic_prefix = "nexo.poller.vault"`,
          `lifecycle = "long_lived"`,
          `max_concurrent_ticks = 8`,
          `tick_timeout_secs = 90`
        ].join("\n")
        const manifest = yield* PluginManifest.parse(text, "/x/devboy-source-vault.toml")
        assert.instanceOf(manifest, PluginManifest.PluginManifest)
        assert.strictEqual(manifest.name, "vault")
        assert.strictEqual(manifest.version, "1.4.2")
        assert.strictEqual(manifest.executable, "bin/devboy-vault")
        assert.deepStrictEqual(manifest.args, ["--stdio", "-v"])
        assert.deepStrictEqual(manifest.allowedEnvVars, ["VAULT_ADDR", "VAULT_TOKEN"])
        assert.strictEqual(manifest.checksumSha256, "ab".repeat(32))
        const poller = manifest.poller
        assert.instanceOf(poller, PluginManifest.PollerSection)
        assert.deepStrictEqual(poller?.kinds, ["gh_issues", "gh_prs2"])
        assert.strictEqual(poller?.brokerTopicPrefix, "nexo.poller.vault")
        assert.strictEqual(poller?.lifecycle, "long_lived")
        assert.strictEqual(poller?.maxConcurrentTicks, 8)
        assert.isTrue(poller !== undefined && Duration.equals(poller.tickTimeout, Duration.seconds(90)))
      }))

    it.effect("applies the defaults for omitted fields", () =>
      Effect.gen(function*() {
        const bare = yield* PluginManifest.parse(minimalToml, "/x/vault.toml")
        assert.deepStrictEqual(bare.args, [])
        assert.deepStrictEqual(bare.allowedEnvVars, [])
        assert.isUndefined(bare.checksumSha256)
        assert.isUndefined(bare.poller)
        assert.isFalse("checksumSha256" in bare)

        const withPoller = yield* PluginManifest.parse(pollerToml(`kinds = ["ticks"]\nlifecycle = "ephemeral"`), "/x/vault.toml")
        const poller = withPoller.poller
        assert.strictEqual(poller?.lifecycle, "ephemeral")
        assert.strictEqual(poller?.maxConcurrentTicks, 1)
        assert.isTrue(poller !== undefined && Duration.equals(poller.tickTimeout, Duration.seconds(60)))
        assert.isUndefined(poller?.brokerTopicPrefix)
      }))

    it.effect("accepts fractional tick timeouts in seconds", () =>
      Effect.gen(function*() {
        const manifest = yield* PluginManifest.parse(
          pollerToml(`kinds = ["ticks"]\nlifecycle = "ephemeral"\ntick_timeout_secs = 1.5`),
          "/x/vault.toml"
        )
        assert.strictEqual(manifest.poller && Duration.toMillis(manifest.poller.tickTimeout), 1500)
      }))

    it.effect("reports a syntax error as Invalid", () =>
      Effect.gen(function*() {
        const error = yield* parseError(`name = "vault"\nversion = \n`, "/x/vault.toml")
        assert.strictEqual(error.reason._tag, "Invalid")
        assert.match(error.message, /^manifest \/x\/vault\.toml: invalid TOML: .*line 2/)
      }))
  })

  describe("JSON", () => {
    it.effect("reads the camelCase field names, with tickTimeoutSecs in seconds", () =>
      Effect.gen(function*() {
        const text = JSON.stringify({
          name: "github",
          version: "0.3.0",
          executable: "/opt/github-poller",
          args: ["--json"],
          allowedEnvVars: ["GITHUB_TOKEN"],
          checksumSha256: "CD".repeat(32),
          poller: {
            kinds: ["gh_issues"],
            brokerTopicPrefix: "nexo.github",
            lifecycle: "ephemeral",
            maxConcurrentTicks: 64,
            tickTimeoutSecs: 3600
          }
        })
        const manifest = yield* PluginManifest.parse(text, "/x/nexo-github.json")
        assert.strictEqual(manifest.name, "github")
        assert.deepStrictEqual(manifest.args, ["--json"])
        assert.deepStrictEqual(manifest.allowedEnvVars, ["GITHUB_TOKEN"])
        assert.strictEqual(manifest.checksumSha256, "CD".repeat(32))
        assert.strictEqual(manifest.poller?.brokerTopicPrefix, "nexo.github")
        assert.strictEqual(manifest.poller?.maxConcurrentTicks, 64)
        assert.isTrue(manifest.poller !== undefined && Duration.equals(manifest.poller.tickTimeout, Duration.hours(1)))
      }))

    it.effect("applies the defaults for omitted fields", () =>
      Effect.gen(function*() {
        const manifest = yield* PluginManifest.parse(
          JSON.stringify({ name: "echo", version: "1", executable: "echo", poller: { kinds: ["ab"], lifecycle: "ephemeral" } }),
          "/x/echo.json"
        )
        assert.deepStrictEqual(manifest.args, [])
        assert.deepStrictEqual(manifest.allowedEnvVars, [])
        assert.strictEqual(manifest.poller?.maxConcurrentTicks, 1)
        assert.isTrue(manifest.poller !== undefined && Duration.equals(manifest.poller.tickTimeout, Duration.minutes(1)))
      }))

    it.effect("rejects the TOML spellings in JSON", () =>
      Effect.gen(function*() {
        const detail = yield* invalidDetail(
          JSON.stringify({ name: "echo", version: "1", executable: "echo", allowed_env_vars: ["HOME"] }),
          "/x/echo.json"
        )
        assert.strictEqual(detail, "unknown key `allowed_env_vars`")
      }))

    it.effect("reports malformed JSON and non-object documents as Invalid", () =>
      Effect.gen(function*() {
        const broken = yield* invalidDetail(`{"name": "echo",`, "/x/echo.json")
        assert.match(broken, /^invalid JSON: /)
        const array = yield* invalidDetail(`[1, 2]`, "/x/echo.json")
        assert.match(array, /^expected object, got \[1,2\]/i)
      }))
  })

  describe("unknown keys and wrong types", () => {
    it.effect("names the file and the key, at the top level of a TOML manifest", () =>
      Effect.gen(function*() {
        const error = yield* parseError(`${minimalToml}allowed_env = ["HOME"]\n`, "/x/devboy-source-vault.toml")
        assert.strictEqual(error.message, "manifest /x/devboy-source-vault.toml: unknown key `allowed_env`")
        assert.strictEqual(error.path, "/x/devboy-source-vault.toml")
      }))

    it.effect("names the key with its section inside [poller]", () =>
      Effect.gen(function*() {
        const detail = yield* invalidDetail(
          pollerToml(`kinds = ["ticks"]\nlifecycle = "ephemeral"\ntick_timeout = 5`),
          "/x/vault.toml"
        )
        assert.strictEqual(detail, "unknown key `poller.tick_timeout`")
      }))

    it.effect("names the key in JSON, top level and inside poller", () =>
      Effect.gen(function*() {
        const top = yield* parseError(
          JSON.stringify({ name: "echo", version: "1", executable: "echo", env: {} }),
          "/x/echo.json"
        )
        assert.strictEqual(top.message, "manifest /x/echo.json: unknown key `env`")
        const nested = yield* invalidDetail(
          JSON.stringify({
            name: "echo",
            version: "1",
            executable: "echo",
            poller: { kinds: ["ab"], lifecycle: "ephemeral", max_concurrent_ticks: 2 }
          }),
          "/x/echo.json"
        )
        assert.strictEqual(nested, "unknown key `poller.max_concurrent_ticks`")
      }))

    it.effect("names the field path of a wrong type", () =>
      Effect.gen(function*() {
        const detail = yield* invalidDetail(
          `name = "vault"\nversion = 2\nexecutable = "bin/vault"\nargs = ["ok", 3]\n`,
          "/x/vault.toml"
        )
        assert.strictEqual(detail, "`version`: expected string, got 2; `args[1]`: expected string, got 3")
        const poller = yield* invalidDetail(pollerToml(`kinds = "ticks"\nlifecycle = "ephemeral"`), "/x/vault.toml")
        assert.strictEqual(poller, "`poller.kinds`: expected array, got \"ticks\"")
      }))

    it.effect("reads the wire a plugin speaks and its discovery methods, and names a value it does not know", () =>
      Effect.gen(function*() {
        const parsed = yield* PluginManifest.parse(
          `${minimalToml}framing = "content-length"\ncancellation = "lsp"\n[discovery]\ntools = "tools/list"\n`,
          "/x/vault.toml"
        )
        assert.strictEqual(parsed.framing, "content-length")
        assert.strictEqual(parsed.cancellation, "lsp")
        assert.deepStrictEqual(parsed.discovery, { tools: "tools/list" })
        const minimal = yield* PluginManifest.parse(minimalToml, "/x/vault.toml")
        assert.isUndefined(minimal.framing)
        assert.isUndefined(minimal.cancellation)
        const detail = yield* invalidDetail(`${minimalToml}framing = "lines"\ncancellation = "grpc"\n[discovery]\ntools = "a b"\n`, "/x/vault.toml")
        assert.include(detail, "`framing`: expected \"ndjson\" | \"content-length\", got \"lines\"")
        assert.include(detail, "`cancellation`: expected \"lsp\" | \"mcp\" | \"none\", got \"grpc\"")
        assert.include(detail, "`discovery.tools`: expected a method name")
      }))

    it.effect("names missing required keys", () =>
      Effect.gen(function*() {
        const detail = yield* invalidDetail(`name = "vault"\nexecutable = "bin/vault"\n[poller]\nkinds = ["ticks"]\n`, "/x/vault.toml")
        assert.strictEqual(detail, "missing key `version`; missing key `poller.lifecycle`")
      }))

    it.effect("reports every problem at once", () =>
      Effect.gen(function*() {
        const error = yield* parseError(`name = "Vault"\nversion = ""\nexecutable = "x"\nextra = 1\n`, "/x/vault.toml")
        const detail = error.reason._tag === "Invalid" ? error.reason.detail : ""
        assert.include(detail, "unknown key `extra`")
        assert.include(detail, "`name`: expected a name that starts with a lowercase letter")
        assert.include(detail, "`version`: expected a non-empty string")
        assert.lengthOf(detail.split("; "), 3)
      }))
  })

  describe("field rules", () => {
    const poller = (lines: string) => pollerToml(`kinds = ["ticks"]\nlifecycle = "ephemeral"\n${lines}`)
    const cases: ReadonlyArray<readonly [string, string, string]> = [
      ["upper-case name", `name = "Vault"\nversion = "1"\nexecutable = "x"`, "`name`: expected a name that starts with a lowercase letter and has only a-z, 0-9, `_`, `.` and `-`, got \"Vault\""],
      ["name starting with a digit", `name = "1vault"\nversion = "1"\nexecutable = "x"`, "`name`: expected a name that starts with a lowercase letter"],
      ["name with a space", `name = "va ult"\nversion = "1"\nexecutable = "x"`, "`name`: expected a name that starts"],
      ["empty version", `name = "vault"\nversion = ""\nexecutable = "x"`, "`version`: expected a non-empty string, got \"\""],
      ["empty executable", `name = "vault"\nversion = "1"\nexecutable = ""`, "`executable`: expected a non-empty string, got \"\""],
      ["63-char checksum", `${minimalToml}checksum_sha256 = "${"a".repeat(63)}"`, "`checksum_sha256`: expected exactly 64 hexadecimal characters (a SHA-256 digest)"],
      ["65-char checksum", `${minimalToml}checksum_sha256 = "${"a".repeat(65)}"`, "`checksum_sha256`: expected exactly 64 hexadecimal characters"],
      ["non-hex checksum", `${minimalToml}checksum_sha256 = "${"g".repeat(64)}"`, "`checksum_sha256`: expected exactly 64 hexadecimal characters"],
      ["upper-case kind", pollerToml(`kinds = ["Ticks"]\nlifecycle = "ephemeral"`), "`poller.kinds[0]`: expected a poller kind: a lowercase letter followed by one or more of a-z, 0-9 and `_`, got \"Ticks\""],
      ["one-letter kind", pollerToml(`kinds = ["ok", "t"]\nlifecycle = "ephemeral"`), "`poller.kinds[1]`: expected a poller kind"],
      ["kind with a dash", pollerToml(`kinds = ["gh-issues"]\nlifecycle = "ephemeral"`), "`poller.kinds[0]`: expected a poller kind"],
      ["duplicate kinds", pollerToml(`kinds = ["gh_issues", "gh_prs", "gh_issues"]\nlifecycle = "ephemeral"`), "`poller.kinds`: duplicate kind \"gh_issues\""],
      ["no kinds", pollerToml(`kinds = []\nlifecycle = "ephemeral"`), "`poller.kinds`: expected at least one poller kind, got []"],
      ["prefix with a trailing dot", poller(`broker_topic_prefix = "nexo.poller."`), "`poller.broker_topic_prefix`: must not end with \".\" (the host appends \".tick\"), got \"nexo.poller.\""],
      ["prefix with a space", poller(`broker_topic_prefix = "nexo poller"`), "`poller.broker_topic_prefix`: must not contain whitespace, got \"nexo poller\""],
      ["prefix with a tab", poller(`broker_topic_prefix = "nexo\\tpoller"`), "`poller.broker_topic_prefix`: must not contain whitespace"],
      ["empty prefix", poller(`broker_topic_prefix = ""`), "`poller.broker_topic_prefix`: expected a non-empty broker topic prefix, got \"\""],
      ["unknown lifecycle", pollerToml(`kinds = ["ticks"]\nlifecycle = "forever"`), "`poller.lifecycle`: expected \"long_lived\" | \"ephemeral\", got \"forever\""],
      ["max_concurrent_ticks = 0", poller(`max_concurrent_ticks = 0`), "`poller.max_concurrent_ticks`: expected an integer from 1 to 64, got 0"],
      ["max_concurrent_ticks = 65", poller(`max_concurrent_ticks = 65`), "`poller.max_concurrent_ticks`: expected an integer from 1 to 64, got 65"],
      ["fractional max_concurrent_ticks", poller(`max_concurrent_ticks = 2.5`), "`poller.max_concurrent_ticks`: expected an integer, got 2.5"],
      ["tick_timeout_secs = 0", poller(`tick_timeout_secs = 0`), "`poller.tick_timeout_secs`: expected a number of seconds from 1 to 3600, got 0"],
      ["tick_timeout_secs = 3601", poller(`tick_timeout_secs = 3601`), "`poller.tick_timeout_secs`: expected a number of seconds from 1 to 3600, got 3601"]
    ]
    for (const [label, text, expected] of cases) {
      it.effect(`rejects ${label}`, () =>
        Effect.gen(function*() {
          const detail = yield* invalidDetail(text, "/x/vault.toml")
          assert.include(detail, expected)
        }))
    }

    it.effect("applies the same rules to JSON, naming the camelCase keys", () =>
      Effect.gen(function*() {
        const detail = yield* invalidDetail(
          JSON.stringify({
            name: "echo",
            version: "1",
            executable: "echo",
            checksumSha256: "abc",
            poller: { kinds: ["ab"], lifecycle: "ephemeral", maxConcurrentTicks: 65, tickTimeoutSecs: 0.5, brokerTopicPrefix: "a." }
          }),
          "/x/echo.json"
        )
        assert.include(detail, "`checksumSha256`: expected exactly 64 hexadecimal characters")
        assert.include(detail, "`poller.maxConcurrentTicks`: expected an integer from 1 to 64, got 65")
        assert.include(detail, "`poller.tickTimeoutSecs`: expected a number of seconds from 1 to 3600, got 0.5")
        assert.include(detail, "`poller.brokerTopicPrefix`: must not end with \".\"")
      }))

    it.effect("accepts the bounds themselves", () =>
      Effect.gen(function*() {
        const low = yield* PluginManifest.parse(poller(`max_concurrent_ticks = 1\ntick_timeout_secs = 1`), "/x/vault.toml")
        assert.strictEqual(low.poller?.maxConcurrentTicks, 1)
        const high = yield* PluginManifest.parse(poller(`max_concurrent_ticks = 64\ntick_timeout_secs = 3600`), "/x/vault.toml")
        assert.strictEqual(high.poller?.maxConcurrentTicks, 64)
        assert.strictEqual(high.poller && Duration.toSeconds(high.poller.tickTimeout), 3600)
      }))

    it.effect("rejects an unsupported extension", () =>
      Effect.gen(function*() {
        const detail = yield* invalidDetail(minimalToml, "/x/vault.yaml")
        assert.strictEqual(detail, "unsupported manifest format (`.yaml`; expected .toml or .json)")
      }))
  })

  describe("file name rule", () => {
    it.effect("accepts a stem equal to the name or ending with -<name>", () =>
      Effect.gen(function*() {
        const plain = yield* PluginManifest.parse(minimalToml, "/x/vault.toml")
        assert.strictEqual(plain.name, "vault")
        const prefixed = yield* PluginManifest.parse(minimalToml, "/x/devboy-source-vault.toml")
        assert.strictEqual(prefixed.name, "vault")
        const dotted = yield* PluginManifest.parse(`name = "a.b"\nversion = "1"\nexecutable = "x"\n`, "/x/a.b.toml")
        assert.strictEqual(dotted.name, "a.b")
      }))

    it.effect("fails with NameMismatch otherwise", () =>
      Effect.gen(function*() {
        const error = yield* parseError(minimalToml, "/x/other.toml")
        assert.strictEqual(error.path, "/x/other.toml")
        assert.deepStrictEqual(
          error.reason._tag === "NameMismatch" ? { name: error.reason.name, stem: error.reason.stem } : error.reason._tag,
          { name: "vault", stem: "other" }
        )
        assert.strictEqual(
          error.message,
          "manifest /x/other.toml: declares name `vault`, but the file name `other` is neither `vault` nor ends with `-vault`"
        )
        // A suffix without the dash does not count.
        const glued = yield* parseError(minimalToml, "/x/devboyvault.toml")
        assert.strictEqual(glued.reason._tag, "NameMismatch")
      }))

    it.effect("is handled like any other reason with catchReason", () =>
      PluginManifest.parse(minimalToml, "/x/other.toml").pipe(
        Effect.map(() => "parsed"),
        Effect.catchReason("ManifestError", "NameMismatch", (reason) => Effect.succeed(`stem ${reason.stem}`)),
        Effect.map((outcome) => assert.strictEqual(outcome, "stem other"))
      ))
  })

  describe("make", () => {
    it("builds a manifest in code with the defaults, poller given as plain fields", () => {
      const manifest = PluginManifest.make({
        name: "echo",
        version: "1",
        executable: "/bin/echo",
        poller: { kinds: ["echo_ticks"], lifecycle: "ephemeral" }
      })
      assert.deepStrictEqual(manifest.args, [])
      assert.deepStrictEqual(manifest.allowedEnvVars, [])
      assert.instanceOf(manifest.poller, PluginManifest.PollerSection)
      assert.strictEqual(manifest.poller?.maxConcurrentTicks, 1)
      assert.isTrue(manifest.poller !== undefined && Duration.equals(manifest.poller.tickTimeout, Duration.seconds(60)))
      const direct = new PluginManifest.PluginManifest({ name: "echo", version: "1", executable: "/bin/echo" })
      assert.deepStrictEqual(direct.args, [])
    })

    it("has no location unless one is given; withLocation copies the manifest with it", () => {
      const manifest = PluginManifest.make({
        name: "echo",
        version: "1",
        executable: "bin/echo",
        checksumSha256: "ab".repeat(32),
        poller: { kinds: ["echo_ticks"], lifecycle: "ephemeral" }
      })
      assert.strictEqual(manifest.location, undefined)
      const located = PluginManifest.withLocation(manifest, { file: "/plugins/echo.toml", dir: "/plugins" })
      assert.deepStrictEqual(located.location, { file: "/plugins/echo.toml", dir: "/plugins" })
      assert.strictEqual(manifest.location, undefined)
      assert.instanceOf(located, PluginManifest.PluginManifest)
      assert.strictEqual(located.checksumSha256, manifest.checksumSha256)
      assert.strictEqual(located.poller, manifest.poller)
      // The same fields in another folder run another executable.
      assert.isFalse(Equal.equals(located, manifest))
      assert.isTrue(Equal.equals(located, PluginManifest.withLocation(manifest, { file: "/plugins/echo.toml", dir: "/plugins" })))
    })

    it("enforces the rules in code too", () => {
      assert.throws(() => PluginManifest.make({ name: "Echo", version: "1", executable: "/bin/echo" }))
      assert.throws(() =>
        PluginManifest.make({
          name: "echo",
          version: "1",
          executable: "/bin/echo",
          poller: { kinds: ["ok"], lifecycle: "ephemeral", tickTimeout: Duration.hours(2) }
        })
      )
      assert.throws(() => new PluginManifest.PollerSection({ kinds: ["ok", "ok"], lifecycle: "ephemeral" }))
    })
  })

  describe("load", () => {
    it.effect("reads a manifest file", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = write(dir, "devboy-source-vault.toml", minimalToml)
        const manifest = yield* PluginManifest.load(file)
        assert.strictEqual(manifest.name, "vault")
        assert.strictEqual(manifest.executable, "bin/vault")
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("knows its absolute file and folder, even when loaded by a relative path", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = write(dir, "devboy-source-vault.toml", minimalToml)
        const manifest = yield* PluginManifest.load(path.relative(process.cwd(), file))
        assert.deepStrictEqual(manifest.location, { file, dir })
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("keeps the location out of every encoding, and files decode as before", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = write(dir, "vault.toml", minimalToml)
        const manifest = yield* PluginManifest.load(file)
        const encoded = Schema.encodeUnknownSync(PluginManifest.PluginManifest)(manifest, { onExcessProperty: "error" })
        assert.deepStrictEqual(encoded, { name: "vault", version: "1.0.0", executable: "bin/vault", args: [], allowedEnvVars: [] })
        assert.notInclude(JSON.stringify(manifest), dir)
        assert.notProperty({ ...manifest }, "location")
        const decoded = Schema.decodeUnknownSync(PluginManifest.PluginManifest)(encoded)
        assert.strictEqual(decoded.location, undefined)
        assert.strictEqual(decoded.executable, manifest.executable)
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("a missing file is NotFound", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = path.join(dir, "vault.toml")
        const error = yield* failure(PluginManifest.load(file))
        assert.strictEqual(error.reason._tag, "NotFound")
        assert.strictEqual(error.message, `manifest ${file}: file not found`)
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("a folder in place of the file is Invalid", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = path.join(dir, "vault.toml")
        fs.mkdirSync(file)
        const error = yield* failure(PluginManifest.load(file))
        assert.strictEqual(error.reason._tag, "Invalid")
        assert.include(error.message, `manifest ${file}: cannot be read`)
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("parses the checked-in sample manifests", () =>
      Effect.gen(function*() {
        const vault = yield* PluginManifest.load(path.join(fixtures, "devboy-source-vault.toml"))
        assert.strictEqual(vault.name, "vault")
        assert.deepStrictEqual(vault.allowedEnvVars, ["VAULT_ADDR", "VAULT_TOKEN"])
        const github = yield* PluginManifest.load(path.join(fixtures, "nexo-github.json"))
        assert.strictEqual(github.poller?.lifecycle, "long_lived")
        assert.strictEqual(github.poller?.maxConcurrentTicks, 4)
      }).pipe(Effect.provide(NodeServices.layer)))
  })

  describe("verify", () => {
    const manifest = (executable: string, checksumSha256?: string) =>
      PluginManifest.make({
        name: "vault",
        version: "1",
        executable,
        ...(checksumSha256 === undefined ? {} : { checksumSha256 })
      })

    it.effect("resolves a relative executable against the manifest's folder", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const binary = write(dir, "plugins/vault/bin/vault", "#!/bin/sh\n")
        const resolved = yield* PluginManifest.verify(manifest("bin/vault"), path.join(dir, "plugins/vault"))
        assert.strictEqual(resolved, binary)
        const upward = yield* PluginManifest.verify(manifest("../vault/bin/vault"), path.join(dir, "plugins/other"))
        assert.strictEqual(upward, binary)
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("keeps an absolute executable", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const binary = write(dir, "elsewhere/vault", "#!/bin/sh\n")
        const resolved = yield* PluginManifest.verify(manifest(binary), path.join(dir, "plugins"))
        assert.strictEqual(resolved, binary)
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("a missing executable is ExecutableMissing naming the resolved path", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const manifestPath = path.join(dir, "vault.toml")
        const error = yield* failure(PluginManifest.verify(manifest("bin/nope"), dir, { manifestPath }))
        assert.strictEqual(error.reason._tag, "ExecutableMissing")
        assert.strictEqual(error.path, manifestPath)
        assert.strictEqual(error.message, `manifest ${manifestPath}: executable ${path.join(dir, "bin/nope")} does not exist`)
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("a folder is not an executable", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        fs.mkdirSync(path.join(dir, "bin"))
        const error = yield* failure(PluginManifest.verify(manifest("bin"), dir))
        assert.strictEqual(error.reason._tag, "ExecutableMissing")
        assert.strictEqual(error.path, dir, "without manifestPath the folder names the error")
        assert.strictEqual(error.message, `manifest ${dir}: executable ${path.join(dir, "bin")} is not a regular file (directory)`)
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("accepts a matching checksum declared in upper case", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const binary = write(dir, "bin/vault", "#!/bin/sh\necho v1\n")
        const declared = sha256("#!/bin/sh\necho v1\n").toUpperCase()
        const resolved = yield* PluginManifest.verify(manifest("bin/vault", declared), dir)
        assert.strictEqual(resolved, binary)
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("re-reads the executable on every call: a rewritten binary fails with ChecksumMismatch", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const manifestPath = path.join(dir, "vault.toml")
        const binary = write(dir, "bin/vault", "original")
        const declared = sha256("original")
        const pinned = manifest("bin/vault", declared.toUpperCase())
        yield* PluginManifest.verify(pinned, dir, { manifestPath })

        write(dir, "bin/vault", "tampered")
        const error = yield* failure(PluginManifest.verify(pinned, dir, { manifestPath }))
        const actual = sha256("tampered")
        const reason = error.reason
        assert.strictEqual(reason._tag, "ChecksumMismatch")
        assert.deepStrictEqual(
          reason._tag === "ChecksumMismatch"
            ? { executable: reason.executable, declared: reason.declared, actual: reason.actual }
            : undefined,
          { executable: binary, declared, actual }
        )
        assert.strictEqual(
          error.message,
          `manifest ${manifestPath}: checksum mismatch for ${binary} (declared ${declared}, actual ${actual})`
        )
      }).pipe(Effect.provide(NodeServices.layer)))
  })

  describe("checksum", () => {
    it.effect("is the lowercase SHA-256 hex of the file", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = write(dir, "hello.txt", "hello\n")
        const digest = yield* PluginManifest.checksum(file)
        assert.strictEqual(digest, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
        const empty = yield* PluginManifest.checksum(write(dir, "empty", ""))
        assert.strictEqual(empty, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("streams a file of tens of megabytes", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const content = new Uint8Array(40 * 1024 * 1024)
        for (let i = 0; i < content.length; i += 4099) content[i] = i % 251
        const file = write(dir, "big.bin", content)
        const digest = yield* PluginManifest.checksum(file)
        assert.strictEqual(digest, sha256(content))
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("fails with the platform error for a missing file", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const error = yield* Effect.flip(PluginManifest.checksum(path.join(dir, "nope")))
        assert.strictEqual(error.reason._tag, "NotFound")
      }).pipe(Effect.provide(NodeServices.layer)))
  })

  describe("discover", () => {
    it.effect("returns one outcome per manifest in the folder and its subfolders, sorted, bad ones beside good ones", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        // good, top level, relative executable
        write(dir, "bin/echo", "echo")
        write(dir, "echo.toml", `name = "echo"\nversion = "1"\nexecutable = "bin/echo"\n`)
        // bad: unknown key
        write(dir, "broken.toml", `name = "broken"\nversion = "1"\nexecutable = "x"\nallowed_env = []\n`)
        // good, in a subfolder, JSON, checksum pinned
        write(dir, "vault/bin/vault", "vault-binary")
        write(
          dir,
          "vault/devboy-source-vault.json",
          JSON.stringify({ name: "vault", version: "2", executable: "bin/vault", checksumSha256: sha256("vault-binary") })
        )
        // bad: name mismatch in a subfolder
        write(dir, "misc/other.toml", `name = "thing"\nversion = "1"\nexecutable = "x"\n`)
        // bad: executable missing
        write(dir, "misc/ghost.toml", `name = "ghost"\nversion = "1"\nexecutable = "bin/ghost"\n`)
        // bad: checksum mismatch
        write(dir, "pinned/bin/pinned", "new build")
        write(
          dir,
          "pinned/pinned.toml",
          `name = "pinned"\nversion = "1"\nexecutable = "bin/pinned"\nchecksum_sha256 = "${sha256("old build")}"\n`
        )
        // ignored: not manifests, hidden, or too deep
        write(dir, "package.json", `{"name":"plugins"}`)
        write(dir, "tsconfig.build.json", `{}`)
        write(dir, "vault/package-lock.json", `{}`)
        write(dir, "vault/Cargo.toml", `[package]\nname = "vault"\n`)
        write(dir, "README.md", "# plugins")
        write(dir, ".draft.toml", "garbage")
        write(dir, "misc/deeper/nested.toml", `name = "nested"\nversion = "1"\nexecutable = "x"\n`)

        const outcomes = yield* PluginManifest.discover(dir)
        const summary = outcomes.map((outcome) =>
          outcome._tag === "Valid"
            ? `${path.relative(dir, outcome.path)} ${outcome._tag} ${outcome.manifest.name}`
            : `${path.relative(dir, outcome.path)} ${outcome._tag} ${outcome.error.reason._tag}`
        )
        assert.deepStrictEqual(summary, [
          "broken.toml Rejected Invalid",
          "echo.toml Valid echo",
          "misc/ghost.toml Rejected ExecutableMissing",
          "misc/other.toml Rejected NameMismatch",
          "pinned/pinned.toml Rejected ChecksumMismatch",
          "vault/devboy-source-vault.json Valid vault"
        ])

        const vault = outcomes[5]
        assert.isTrue(vault?._tag === "Valid")
        if (vault?._tag === "Valid") {
          assert.strictEqual(vault.dir, path.join(dir, "vault"))
          assert.deepStrictEqual(vault.manifest.location, { file: vault.path, dir: vault.dir })
          assert.strictEqual(vault.executablePath, path.join(dir, "vault/bin/vault"))
        }
        const broken = outcomes[0]
        assert.strictEqual(broken?._tag, "Rejected")
        if (broken?._tag === "Rejected") {
          assert.strictEqual(broken.error.path, path.join(dir, "broken.toml"))
          assert.strictEqual(broken.error.message, `manifest ${path.join(dir, "broken.toml")}: unknown key \`allowed_env\``)
        }
        const ghost = outcomes[2]
        assert.strictEqual(ghost?._tag, "Rejected")
        if (ghost?._tag === "Rejected") {
          assert.strictEqual(
            ghost.error.message,
            `manifest ${path.join(dir, "misc/ghost.toml")}: executable ${path.join(dir, "misc/bin/ghost")} does not exist`
          )
        }
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("returns absolute paths for a relative folder", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        write(dir, "bin/echo", "echo")
        write(dir, "echo.toml", `name = "echo"\nversion = "1"\nexecutable = "bin/echo"\n`)
        const outcomes = yield* PluginManifest.discover(path.relative(process.cwd(), dir))
        assert.lengthOf(outcomes, 1)
        assert.strictEqual(outcomes[0]?.path, path.join(dir, "echo.toml"))
        assert.isTrue(path.isAbsolute(outcomes[0]?.path ?? ""))
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("a [remote] manifest is valid without its executable here (its instances run it elsewhere); a local one is not", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        write(dir, "calendar.toml", `name = "calendar"\nversion = "1"\nexecutable = "calendar-nats.ts"\n[remote]\nsubject_prefix = "plugins.calendar"\n`)
        write(dir, "local.toml", `name = "local"\nversion = "1"\nexecutable = "missing"\n`)
        const outcomes = yield* PluginManifest.discover(dir)
        assert.deepStrictEqual(outcomes.map((o) => [o._tag, o._tag === "Rejected" ? o.error.reason._tag : o.manifest.name]), [
          ["Valid", "calendar"],
          ["Rejected", "ExecutableMissing"]
        ])
      }).pipe(Effect.provide(NodeServices.layer)))

    it.effect("a missing folder fails with NotFound naming the folder; an existing empty folder gives an empty list", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const missing = path.join(dir, "does-not-exist")
        const error = yield* PluginManifest.discover(missing).pipe(Effect.flip)
        assert.strictEqual(error.reason._tag, "NotFound")
        assert.strictEqual(error.path, missing)
        assert.strictEqual(error.message, `plugin directory ${missing} does not exist`)
        assert.deepStrictEqual(yield* PluginManifest.discover(dir), [])
      }).pipe(Effect.provide(NodeServices.layer)))

    it("recognises manifest file names", () => {
      assert.isTrue(PluginManifest.isManifestFileName("echo.toml"))
      assert.isTrue(PluginManifest.isManifestFileName("nexo-github.json"))
      assert.isFalse(PluginManifest.isManifestFileName("package.json"))
      assert.isFalse(PluginManifest.isManifestFileName("package-lock.json"))
      assert.isFalse(PluginManifest.isManifestFileName("tsconfig.json"))
      assert.isFalse(PluginManifest.isManifestFileName("tsconfig.build.json"))
      assert.isFalse(PluginManifest.isManifestFileName("Cargo.toml"))
      assert.isFalse(PluginManifest.isManifestFileName(".hidden.toml"))
      assert.isFalse(PluginManifest.isManifestFileName("echo.yaml"))
    })
  })
})

describe("PluginManifest [remote]", () => {
  it.effect("a TOML [remote] table says where the plugin's instances are; omitted fields take their defaults", () =>
    Effect.gen(function*() {
      const full = yield* PluginManifest.parse(
        `${minimalToml}[remote]\nsubject_prefix = "plugins.vault"\nservice = "vault-svc"\nservers = ["nats://a:4222", "b:4222"]\nidempotent = ["get"]\nmin_instances = 2\n`,
        "/x/vault.toml"
      )
      assert.deepStrictEqual(
        { ...full.remote },
        { subjectPrefix: "plugins.vault", service: "vault-svc", servers: ["nats://a:4222", "b:4222"], idempotent: ["get"], minInstances: 2 }
      )
      const bare = yield* PluginManifest.parse(`${minimalToml}[remote]\nsubject_prefix = "plugins.vault"\n`, "/x/vault.toml")
      assert.deepStrictEqual({ ...bare.remote }, { subjectPrefix: "plugins.vault", idempotent: [], minInstances: 1 })
      const json = yield* PluginManifest.parse(
        JSON.stringify({ name: "vault", version: "1", executable: "bin/vault", remote: { subjectPrefix: "plugins.vault", minInstances: 3 } }),
        "/x/vault.json"
      )
      assert.strictEqual(json.remote?.minInstances, 3)
    }))

  it.effect("a bad [remote] field is named with its section", () =>
    Effect.gen(function*() {
      const unknown = yield* invalidDetail(`${minimalToml}[remote]\nsubject_prefix = "p"\nserver = "x"\n`, "/x/vault.toml")
      assert.strictEqual(unknown, "unknown key `remote.server`")
      const service = yield* invalidDetail(`${minimalToml}[remote]\nsubject_prefix = "p"\nservice = "a.b"\n`, "/x/vault.toml")
      assert.include(service, "`remote.service`")
      const missing = yield* invalidDetail(`${minimalToml}[remote]\nservice = "svc"\n`, "/x/vault.toml")
      assert.include(missing, "`remote.subject_prefix`")
      const none = yield* invalidDetail(`${minimalToml}[remote]\nsubject_prefix = "p"\nmin_instances = 0\n`, "/x/vault.toml")
      assert.include(none, "`remote.min_instances`")
      assert.include(none, "an integer from 1 to 1000")
    }))
})
