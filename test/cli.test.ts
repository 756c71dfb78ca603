import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { renderFrame } from "../src/cli/StatusView.ts"
import * as PluginHealth from "../src/PluginHealth.ts"
import { skipNats, spawnNode, startNatsServer } from "./support/nats.ts"
import { eventually, fixture, isAlive, liveChildren, node } from "./support/processes.ts"

const root = path.resolve(import.meta.dirname, "..")
const main = path.join(root, "src/cli/main.ts")

/** The environment of a command run: this process's, without any PLUGIN_HOST_* setting, plus `env`. */
const envWith = (env: Record<string, string>) => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("PLUGIN_HOST_"))),
  ...env
})

/** Runs `plugin-host ARGS` to completion (bounded). */
const cli = (args: ReadonlyArray<string>, timeoutMs = 20_000, env: Record<string, string> = {}) => {
  const result = spawnSync(node, [main, ...args], { cwd: root, encoding: "utf8", timeout: timeoutMs, env: envWith(env) })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** A plugin folder made for one test: manifests pointing at the test fixtures. */
const pluginDir = (manifests: Record<string, string>) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-cli-"))
  for (const [file, text] of Object.entries(manifests)) fs.writeFileSync(path.join(dir, file), text)
  return dir
}

const rpcManifest = (name: string, args: ReadonlyArray<string> = []) =>
  [
    `name = "${name}"`,
    `version = "1.0.0"`,
    `executable = "${node}"`,
    `args = ${JSON.stringify([fixture("rpc-plugin.mjs"), ...args])}`
  ].join("\n")

const crashingManifest = (name: string) =>
  [`name = "${name}"`, `version = "1.0.0"`, `executable = "${fixture("crash-on-start.sh")}"`].join("\n")

const pollerManifest = [
  `name = "rss-poller"`,
  `version = "1.0.0"`,
  `executable = "${node}"`,
  `args = ${JSON.stringify([fixture("ephemeral-poller.mjs")])}`,
  `[poller]`,
  `kinds = ["rss"]`,
  `lifecycle = "ephemeral"`,
  `tick_timeout_secs = 5`
].join("\n")

describe("plugin-host command (subprocess)", () => {
  const dirs: Array<string> = []
  afterEach(async () => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })
  const makeDir = (manifests: Record<string, string>) => {
    const dir = pluginDir(manifests)
    dirs.push(dir)
    return dir
  }

  it("call prints the result, and a typed error with its reason tag and exit code 1", () => {
    const dir = makeDir({ "echo.toml": rpcManifest("echo") })
    const ok = cli(["call", "echo", "echo", "{\"hello\":[1,2]}", "--dir", dir])
    assert.strictEqual(ok.code, 0, ok.stderr)
    assert.deepStrictEqual(JSON.parse(ok.stdout), { hello: [1, 2] })
    const failed = cli(["call", "echo", "fail", "{\"error\":{\"kind\":\"needs-credential\",\"detail\":\"locked\"}}", "--dir", dir])
    assert.strictEqual(failed.code, 1)
    assert.include(failed.stderr, "plugin `echo` returned an error: needs-credential: locked [PluginError]")
    const timeout = cli(["call", "echo", "sleep", "{\"ms\":5000}", "--timeout", "300ms", "--dir", dir])
    assert.strictEqual(timeout.code, 1)
    assert.include(timeout.stderr, "[Timeout]")
  })

  it("bad arguments get a usage message and exit code 2, never a stack trace", () => {
    const missing = cli(["call"])
    assert.strictEqual(missing.code, 2)
    assert.include(missing.stderr + missing.stdout, "Missing required argument")
    assert.notInclude(missing.stderr, "    at ")
    const badJson = cli(["call", "echo", "echo", "{nope"])
    assert.strictEqual(badJson.code, 2)
    assert.include(badJson.stderr, "PARAMS_JSON is not valid JSON")
    const unknown = cli(["frobnicate"])
    assert.strictEqual(unknown.code, 2)
  })

  it("--help exits 0; an unknown flag exits 2 with the usage text", () => {
    const help = cli(["doctor", "--help"])
    assert.strictEqual(help.code, 0, help.stderr)
    assert.include(help.stdout, "USAGE")
    const unknown = cli(["doctor", "--bogus"])
    assert.strictEqual(unknown.code, 2)
    assert.include(unknown.stdout + unknown.stderr, "Unrecognized flag: --bogus")
  })

  it("a missing --dir exits 2 naming the folder, for doctor, run, call and tick", () => {
    const missing = path.join(os.tmpdir(), "plugin-host-cli-does-not-exist")
    for (const args of [["doctor"], ["run"], ["call", "echo", "echo"], ["tick", "rss"]]) {
      const result = cli([...args, "--dir", missing])
      assert.strictEqual(result.code, 2, `${args[0]}: ${result.stdout}${result.stderr}`)
      assert.include(result.stderr, `error: plugin directory ${missing} does not exist`, args[0])
    }
  })

  it("an invalid PLUGIN_HOST_* variable exits 2 naming the variable", () => {
    const level = cli(["checksum", fixture("env-dump.sh")], 20_000, { PLUGIN_HOST_LOG_LEVEL: "loud" })
    assert.strictEqual(level.code, 2)
    assert.include(level.stderr, "error: invalid environment: PLUGIN_HOST_LOG_LEVEL: expected one of")
    const dir = makeDir({ "echo.toml": rpcManifest("echo") })
    const cap = cli(["call", "echo", "echo", "1", "--dir", dir], 20_000, { PLUGIN_HOST_RESTART_CAP: "0" })
    assert.strictEqual(cap.code, 2)
    assert.include(cap.stderr, "error: invalid environment: PLUGIN_HOST_RESTART_CAP: restartCap must be an integer >= 1")
    // Case does not matter, as for --log-level.
    assert.strictEqual(cli(["checksum", fixture("env-dump.sh")], 20_000, { PLUGIN_HOST_LOG_LEVEL: "DEBUG" }).code, 0)
  })

  it("call takes its timeout from PLUGIN_HOST_REQUEST_TIMEOUT, and --timeout overrides it", () => {
    const dir = makeDir({ "echo.toml": rpcManifest("echo") })
    const env = { PLUGIN_HOST_REQUEST_TIMEOUT: "300ms" }
    const configured = cli(["call", "echo", "sleep", "{\"ms\":5000}", "--dir", dir], 20_000, env)
    assert.strictEqual(configured.code, 1)
    assert.include(configured.stderr, "timed out after 300 ms waiting for `sleep` [Timeout]")
    const flagged = cli(["call", "echo", "sleep", "{\"ms\":1000}", "--timeout", "10s", "--dir", dir], 20_000, env)
    assert.strictEqual(flagged.code, 0, flagged.stderr)
  })

  it("a plugin whose manifest was rejected is named with the rejection, by the file-name rule", () => {
    const checksum = "ab".repeat(32)
    const dir = makeDir({
      "devboy-echo.toml": `${rpcManifest("echo")}\nchecksum_sha256 = "${checksum}"`,
      // Contains "ech" but its stem does not imply `ech`: never blamed for it.
      "echoes.toml": "name = ",
      "good.toml": rpcManifest("good")
    })
    const rejected = cli(["call", "echo", "echo", "--dir", dir])
    assert.strictEqual(rejected.code, 1)
    assert.include(rejected.stderr, `error: plugin \`echo\` cannot be used: its manifest ${path.join(dir, "devboy-echo.toml")} was rejected: checksum mismatch`)
    const other = cli(["call", "ech", "echo", "--dir", dir])
    assert.strictEqual(other.code, 1)
    assert.include(other.stderr, "no plugin named `ech`")
  })

  it("an unknown plugin names the ones there are", () => {
    const dir = makeDir({ "echo.toml": rpcManifest("echo") })
    const result = cli(["call", "nope", "echo", "--dir", dir])
    assert.strictEqual(result.code, 1)
    assert.include(result.stderr, "no plugin named `nope`")
    assert.include(result.stderr, "echo")
  })

  it("doctor prints the table and exits 0 when every plugin is healthy; --json decodes with the report Schema", () => {
    const dir = makeDir({ "echo.toml": rpcManifest("echo"), "rss-poller.toml": pollerManifest })
    const table = cli(["doctor", "--dir", dir])
    assert.strictEqual(table.code, 0, table.stderr)
    assert.include(table.stdout, "echo")
    assert.include(table.stdout, "rss-poller")
    const json = cli(["doctor", "--json", "--dir", dir])
    assert.strictEqual(json.code, 0, json.stderr)
    const report = Schema.decodeUnknownSync(PluginHealth.DoctorReport)(JSON.parse(json.stdout))
    assert.deepStrictEqual(report.plugins.map((p) => p.id).sort(), ["echo", "rss-poller"])
    assert.strictEqual(report.plugins.find((p) => p.id === "echo")?.state, "Running")
    // How this host ends plugin trees, in the table and the JSON alike.
    assert.include(["cgroup", "process tree"], report.containment?.mode)
    assert.include(table.stdout, `containment: ${report.containment?.mode}`)
  })

  it("doctor runs the discovery a manifest declares, over the framing it declares, and shows the tools and resources", () => {
    const lspManifest = [
      `name = "lsp"`,
      `version = "1.0.0"`,
      `executable = "${node}"`,
      `args = ${JSON.stringify([fixture("lsp-peer.mjs")])}`,
      `framing = "content-length"`,
      `cancellation = "lsp"`,
      `[discovery]`,
      `tools = "tools/list"`,
      `resources = "resources/list"`
    ].join("\n")
    const dir = makeDir({ "lsp.toml": lspManifest, "echo.toml": rpcManifest("echo") })
    const table = cli(["doctor", "--dir", dir])
    assert.strictEqual(table.code, 0, table.stdout + table.stderr)
    assert.include(table.stdout, "hover (Shows what is under the cursor)")
    assert.include(table.stdout, "file:///workspace [inode/directory]")
    const json = cli(["doctor", "--json", "--dir", dir])
    const report = Schema.decodeUnknownSync(PluginHealth.DoctorReport)(JSON.parse(json.stdout))
    const discovery = report.groups.find((g) => g.group === "plugins")?.discovery
    assert.deepStrictEqual(discovery?.toolDetails.find((t) => t.name === "hover")?.inputSchema, { type: "object" })
    // The plugin without a declared discovery keeps its handshake's methods as its tools.
    assert.deepStrictEqual((discovery?.servers ?? []).map((s) => s.serverName).sort(), ["echo", "lsp"])
  })

  it("doctor runs no discovery when no manifest declares it", () => {
    const dir = makeDir({ "echo.toml": rpcManifest("echo") })
    const json = cli(["doctor", "--json", "--dir", dir])
    assert.strictEqual(json.code, 0, json.stderr)
    const report = Schema.decodeUnknownSync(PluginHealth.DoctorReport)(JSON.parse(json.stdout))
    assert.isUndefined(report.groups.find((g) => g.group === "plugins")?.discovery)
  })

  it("doctor exits 1 when a plugin is disabled, naming it (PLUGIN_HOST_RESTART_CAP=1 disables at the first crash)", () => {
    const dir = makeDir({ "echo.toml": rpcManifest("echo"), "broken.toml": crashingManifest("broken") })
    const result = cli(["doctor", "--dir", dir], 20_000, { PLUGIN_HOST_RESTART_CAP: "1" })
    assert.strictEqual(result.code, 1, result.stdout + result.stderr)
    assert.include(result.stderr, "plugin `broken` is disabled")
    assert.notInclude(result.stderr, "plugin `echo`")
    assert.match(result.stdout, /broken\s+Disabled/)
  })

  it("doctor exits 1 when a plugin fails", () => {
    const dir = makeDir({ "echo.toml": rpcManifest("echo"), "broken.toml": crashingManifest("broken") })
    const result = cli(["doctor", "--dir", dir])
    assert.strictEqual(result.code, 1)
    assert.include(result.stderr, "plugin `broken` failed")
    assert.include(result.stdout, "broken")
  })

  it("tick runs one poller tick and prints the TickAck", () => {
    const dir = makeDir({ "rss-poller.toml": pollerManifest })
    const cursor = Buffer.from("page-1").toString("base64url")
    const result = cli(["tick", "rss", "--cursor", cursor, "--config", "{}", "--dir", dir])
    assert.strictEqual(result.code, 0, result.stderr)
    const ack = JSON.parse(result.stdout)
    assert.strictEqual(Buffer.from(ack.nextCursor, "base64url").toString(), "page-1+")
    assert.deepStrictEqual(ack.metrics, { itemsSeen: 3, itemsDispatched: 2 })
    const permanent = cli(["tick", "rss", "--config", "{\"mode\":\"permanent\"}", "--dir", dir])
    assert.strictEqual(permanent.code, 1)
    assert.include(permanent.stderr, "[Permanent]")
  })

  it("the demo (npm start) tours the bundled plugins and exits 0", () => {
    // `npm start` runs `plugin-host` with no subcommand, which is the demo.
    const result = cli([], 30_000)
    assert.strictEqual(result.code, 0, result.stderr)
    for (const promise of ["Lazy spawn", "Calls both ways", "A crash", "restart cap", "Idle reaping", "ephemeral poller", "doctor"]) {
      assert.include(result.stdout, promise)
    }
    assert.include(result.stdout, "exceeded restart cap (3 restarts in 1 min)")
    assert.include(result.stdout, "reaped: yes")
    assert.match(result.stdout, /group bundled: Healthy/)
  })

  it("doctor on the bundled example plugins exits 0", () => {
    const result = cli(["doctor", "--dir", path.join(root, "examples/plugins")], 30_000)
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    for (const name of ["echo", "secrets", "flaky", "rss-poller", "calendar"]) assert.include(result.stdout, name)
  })

  it("examples/quickstart.ts (the connection underneath the client) runs to the end", () => {
    const result = spawnSync(node, [path.join(root, "examples/quickstart.ts")], { cwd: root, encoding: "utf8", timeout: 20_000 })
    assert.strictEqual(result.status, 0, result.stderr)
    assert.include(result.stdout, "sum (computed by the host) → 10")
    assert.include(result.stdout, "crash → plugin `echo` exited with code 7 [Exited]")
  })

  it("checksum prints the SHA-256", () => {
    const result = cli(["checksum", fixture("env-dump.sh")])
    assert.strictEqual(result.code, 0)
    assert.match(result.stdout, /^[0-9a-f]{64} {2}.*env-dump\.sh\n$/)
  })

  it.live("run hosts every plugin until SIGTERM, then stops them all and exits 0 with no child left", () =>
    Effect.gen(function*() {
      const dir = makeDir({ "a.toml": rpcManifest("a"), "b.toml": rpcManifest("b", ["--trap-term", "--ignore-eof"]) })
      const child = spawn(node, [main, "run", "--dir", dir], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      child.stdout.on("data", (d: Buffer) => void (out += d.toString()))
      child.stderr.on("data", (d: Buffer) => void (out += d.toString()))
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      const ready = yield* eventually(() => (out.match(/ready \(pid/g) ?? []).length === 2, 10_000)
      assert.isTrue(ready, out)
      const pids = [...out.matchAll(/ready \(pid (\d+)\)/g)].map((m) => Number(m[1]))
      assert.isTrue(pids.every(isAlive))
      child.kill("SIGTERM")
      const code = yield* Effect.promise(() => exited)
      assert.strictEqual(code, 0, out)
      assert.include(out, "stopped")
      assert.deepStrictEqual(pids.filter(isAlive), [])
    }))
})

describe.skipIf(skipNats)("plugin-host tick --nats (real nats-server)", () => {
  it.live("ticks a long-lived poller served over NATS, and names an unreachable server", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const worker = yield* spawnNode(path.join(root, "examples/plugins/calendar/calendar-nats.ts"), { NATS_URL: server.url })
      yield* worker.waitForStderr("serving plugins.calendar.tick", 10_000)
      const ok = cli(["tick", "calendar", "--nats", server.url, "--dir", path.join(root, "examples/plugins")])
      assert.strictEqual(ok.code, 0, ok.stderr)
      const ack = JSON.parse(ok.stdout)
      assert.strictEqual(Buffer.from(ack.nextCursor, "base64url").toString(), "evt-2")
      const down = cli(["tick", "calendar", "--nats", "nats://127.0.0.1:1", "--dir", path.join(root, "examples/plugins")])
      assert.strictEqual(down.code, 1)
      assert.include(down.stderr, "cannot connect to NATS at nats://127.0.0.1:1")
    }))
})

describe.skipIf(skipNats)("plugin-host doctor --nats (real nats-server)", () => {
  afterEach(async () => {
    const clean = await Effect.runPromise(eventually(() => liveChildren().length === 0, 3_000))
    assert.isTrue(clean, `children left behind: ${liveChildren().join(", ")}`)
  })

  it.live("with no remote manifest, lists every NATS service answering $SRV.PING with its instances, marked as in no manifest, beside the local plugins, in text and JSON", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const responder = path.join(root, "test/fixtures/micro-responder.ts")
      const one = yield* spawnNode(responder, { NATS_URL: server.url, SERVICE: "calendar", INSTANCE: "cal1", REQUESTS: "7", ERRORS: "1", LAST_ERROR: "calendar locked" })
      const two = yield* spawnNode(responder, { NATS_URL: server.url, SERVICE: "calendar", INSTANCE: "cal2" })
      yield* one.waitForStderr("responding calendar cal1", 10_000)
      yield* two.waitForStderr("responding calendar cal2", 10_000)
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-host-cli-"))
      try {
        fs.writeFileSync(path.join(dir, "echo.toml"), rpcManifest("echo"))
        const text = cli(["doctor", "--nats", server.url, "--dir", dir])
        assert.strictEqual(text.code, 0, text.stderr + text.stdout)
        assert.include(text.stdout, "echo")
        assert.include(text.stdout, "remote calendar (NATS service calendar, answering but in no manifest): Healthy - 2 instances (1 required)")
        assert.match(text.stdout, /instance cal1 v1\.0\.0: ping [\d.]+ (ms|s), 7 requests, 1 errors, last error: calendar locked/)
        assert.match(text.stdout, /instance cal2 v1\.0\.0: ping [\d.]+ (ms|s), 0 requests, 0 errors\n?/)
        const json = cli(["doctor", "--json", "--nats", server.url, "--dir", dir])
        assert.strictEqual(json.code, 0, json.stderr)
        const report = Schema.decodeUnknownSync(PluginHealth.DoctorReport)(JSON.parse(json.stdout))
        assert.deepStrictEqual(report.plugins.map((p) => p.id), ["echo"])
        const [calendar, ...others] = report.remotes ?? []
        assert.strictEqual(others.length, 0)
        assert.deepInclude(calendar, { plugin: "calendar", service: "calendar", state: "Healthy", minInstances: 1, discovered: true })
        assert.sameMembers(calendar?.instances.map((i) => i.id) ?? [], ["cal1", "cal2"])
        yield* one.kill("SIGTERM")
        yield* two.kill("SIGTERM")
        yield* one.exited
        yield* two.exited
        const none = cli(["doctor", "--nats", server.url, "--dir", dir])
        assert.strictEqual(none.code, 0, none.stderr)
        assert.include(none.stdout, `no NATS service answers $SRV.PING at ${server.url}`)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.live("reports the folder's remote plugins by their manifests' service and min_instances, and marks other answering services", () =>
    Effect.gen(function*() {
      const server = yield* startNatsServer
      const workerEnv = { NATS_URL: server.url, WORKER_PREFIX: "plugins.remote", WORKER_SERVICE: "remote-test" }
      const one = yield* spawnNode(fixture("remote-worker.ts"), workerEnv)
      const two = yield* spawnNode(fixture("remote-worker.ts"), workerEnv)
      const billing = yield* spawnNode(path.join(root, "test/fixtures/micro-responder.ts"), { NATS_URL: server.url, SERVICE: "billing", INSTANCE: "bill1" })
      yield* one.waitForStderr("serving", 15_000)
      yield* two.waitForStderr("serving", 15_000)
      yield* billing.waitForStderr("responding billing bill1", 10_000)
      const remoteManifest = [
        `name = "remote"`,
        `version = "1.0.0"`,
        `executable = "remote-worker.ts"`,
        `[remote]`,
        `subject_prefix = "plugins.remote"`,
        `service = "remote-test"`,
        `min_instances = 3`
      ].join("\n")
      const dir = pluginDir({ "echo.toml": rpcManifest("echo"), "remote.toml": remoteManifest })
      try {
        const text = cli(["doctor", "--nats", server.url, "--dir", dir])
        assert.strictEqual(text.code, 0, "degraded is not failed: " + text.stderr + text.stdout)
        assert.include(text.stdout, "remote remote (NATS service remote-test): Degraded - 2 of 3 required instances")
        assert.match(text.stdout, /^remote\s+Running\s+Degraded\s+-/m, "the plugin's row is as its instances")
        assert.include(text.stdout, "group plugins: Degraded")
        assert.strictEqual(text.stdout.match(/^ {2}instance [0-9a-f-]{36} v1\.0\.0: ping [\d.]+ (ms|s), \d+ requests/gm)?.length, 2, text.stdout)
        assert.include(text.stdout, "remote billing (NATS service billing, answering but in no manifest): Healthy - 1 instance (1 required)")
        assert.notInclude(text.stdout, "no NATS service answers")
        const json = cli(["doctor", "--json", "--nats", server.url, "--dir", dir])
        assert.strictEqual(json.code, 0, json.stderr)
        const report = Schema.decodeUnknownSync(PluginHealth.DoctorReport)(JSON.parse(json.stdout))
        assert.sameMembers(report.plugins.map((p) => p.id), ["echo", "remote"])
        const byName = new Map((report.remotes ?? []).map((r) => [r.plugin, r] as const))
        assert.deepInclude(byName.get("remote"), { service: "remote-test", minInstances: 3, state: "Degraded" })
        assert.isUndefined(byName.get("remote")?.discovered)
        assert.deepInclude(byName.get("billing"), { service: "billing", state: "Healthy", discovered: true })
        yield* one.kill("SIGTERM")
        yield* two.kill("SIGTERM")
        yield* one.exited
        yield* two.exited
        const gone = cli(["doctor", "--nats", server.url, "--dir", dir])
        assert.strictEqual(gone.code, 1, gone.stdout)
        assert.include(gone.stdout, "remote remote (NATS service remote-test): Failed - no instance answers")
        assert.include(gone.stderr, "remote plugin `remote` failed: no instance answers")
        assert.notInclude(gone.stderr, "plugin `remote` failed: no instance answers;", "the problem is named once")
        assert.notInclude(gone.stderr, "billing")
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }), 90_000)

  it("a remote manifest whose own servers cannot be reached fails the doctor, naming the plugin", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "doctor-remote-down-"))
    try {
      fs.writeFileSync(
        path.join(dir, "faraway.toml"),
        `name = "faraway"\nversion = "1.0.0"\nexecutable = "faraway.ts"\n\n[remote]\nsubject_prefix = "plugins.faraway"\nservers = ["nats://127.0.0.1:1"]\n`
      )
      const down = cli(["doctor", "--dir", dir])
      assert.strictEqual(down.code, 1, down.stdout)
      assert.include(down.stderr, "faraway could not be hosted")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("an unreachable --nats server fails the doctor with exit code 1, naming it", () => {
    const down = cli(["doctor", "--nats", "nats://127.0.0.1:1", "--dir", path.join(root, "examples/plugins")])
    assert.strictEqual(down.code, 1)
    assert.include(down.stderr, "cannot connect to NATS at nats://127.0.0.1:1")
  })
})

describe("plugin-host run, live view on a terminal (frames as a pure function)", () => {
  it("a redraw moves back over the previous frame, erases to the end of the screen, prints the log lines, then the rows", () => {
    const out = renderFrame({ previousHeight: 3, rows: ["a Running", "b Running"], logs: ["WARN plugin=a: slow"], columns: 80 })
    assert.strictEqual(out, "\r\x1b[3A\x1b[0J" + "WARN plugin=a: slow\n" + "a Running\n" + "b Running\n")
  })

  it("the first frame erases nothing; a frame with fewer rows leaves no stale row (erase to end of screen)", () => {
    assert.strictEqual(renderFrame({ previousHeight: 0, rows: ["a"], logs: [] }), "a\n")
    const shrunk = renderFrame({ previousHeight: 2, rows: ["a"], logs: [] })
    assert.strictEqual(shrunk, "\r\x1b[2A\x1b[0Ja\n")
  })

  it("rows are cut to the terminal width so that none wraps; log lines are kept whole", () => {
    const long = "x".repeat(50)
    const out = renderFrame({ previousHeight: 0, rows: [long], logs: [long], columns: 20 })
    const [log, row] = out.split("\n")
    assert.strictEqual(log, long)
    assert.strictEqual(row?.length, 19)
    assert.isTrue(row?.endsWith("…"))
  })
})
