import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import * as DoctorReport from "../src/DoctorReport.ts"
import * as GroupHealth from "../src/GroupHealth.ts"
import type * as PluginClient from "../src/PluginClient.ts"
import type * as PluginManager from "../src/PluginManager.ts"
import { snapshot } from "./support/healthSnapshot.ts"


const diagnostics = (health: PluginClient.HealthSnapshot, checksumDeclared = false): PluginManager.Diagnostics => ({
  id: "p",
  manifest: { name: "p", executable: "p" },
  allowedEnvVars: ["TOKEN"],
  envVarNames: ["TOKEN", "EXTRA"],
  checksumDeclared,
  health
})

const diagnose = (health: PluginClient.HealthSnapshot, options: { checksumDeclared?: boolean; stderrTailLines?: number } = {}) =>
  DoctorReport.PluginDiagnosis.fromDiagnostics(diagnostics(health, options.checksumDeclared), {
    server: GroupHealth.serverHealthOf("p", health),
    groups: ["g"],
    stderrTailLines: options.stderrTailLines ?? 5
  })

describe("DoctorReport (diagnosis of one plugin)", () => {
  it("the checksum status: not declared, pending before the first spawn, verified after it, mismatch when a spawn was refused", () => {
    const table: ReadonlyArray<readonly [string, boolean, PluginClient.HealthSnapshot, DoctorReport.ChecksumStatus]> = [
      ["no checksum declared", false, snapshot({ _tag: "Running" }, { spawns: 1 }), "not declared"],
      ["declared, never spawned", true, snapshot({ _tag: "Idle" }), "pending"],
      ["declared and spawned", true, snapshot({ _tag: "Running" }, { spawns: 1 }), "verified"],
      ["the last spawn was refused", true, snapshot({ _tag: "Recovering" }, { spawns: 1, lastErrorReason: "ChecksumMismatch" }), "mismatch"],
      ["a refused spawn with no spawn before", true, snapshot({ _tag: "Idle" }, { lastErrorReason: "ChecksumMismatch" }), "mismatch"],
      ["running again after a refusal is verified", true, snapshot({ _tag: "Running" }, { spawns: 2, lastErrorReason: "ChecksumMismatch" }), "verified"],
      ["another failure reason is not a mismatch", true, snapshot({ _tag: "Recovering" }, { spawns: 1, lastErrorReason: "InitFailed" }), "verified"]
    ]
    for (const [title, declared, health, status] of table) {
      assert.strictEqual(diagnose(health, { checksumDeclared: declared }).checksum, status, title)
    }
  })

  it("the stderr tail keeps the last non-blank lines, right-trimmed, and none when configured to 0", () => {
    const stderrExcerpt = "first\n\nsecond  \n   \nthird\n"
    const table: ReadonlyArray<readonly [number, ReadonlyArray<string>]> = [
      [0, []],
      [1, ["third"]],
      [2, ["second", "third"]],
      [5, ["first", "second", "third"]]
    ]
    for (const [lines, tail] of table) {
      assert.deepStrictEqual(diagnose(snapshot({ _tag: "Idle" }, { stderrExcerpt }), { stderrTailLines: lines }).stderrTail, tail, `${lines} lines`)
    }
  })

  it("the state detail says why a plugin is disabled and until when it backs off", () => {
    assert.strictEqual(diagnose(snapshot({ _tag: "Disabled", reason: "crashed 3 times within 1 min" })).stateDetail, "crashed 3 times within 1 min")
    assert.strictEqual(diagnose(snapshot({ _tag: "Backoff", until: 2_500 })).stateDetail, "until 1970-01-01T00:00:02.500Z")
    assert.isFalse("stateDetail" in diagnose(snapshot({ _tag: "Running" })))
  })

  it("the plugin's own last error wins over the verdict's, and the live figures are copied", () => {
    const stopped = diagnose(snapshot({ _tag: "Stopped" }))
    assert.deepStrictEqual([stopped.status, stopped.lastError], ["Failed", "stopped"], "the verdict's reason when the plugin has none")
    const crashed = diagnose(snapshot({ _tag: "Disabled", reason: "crashed 3 times" }, {
      lastError: "exited with code 2",
      lastErrorReason: "Exited",
      pid: 42,
      uptime: Duration.seconds(3),
      totalCrashes: 3,
      supportedMethods: ["echo"]
    }))
    assert.strictEqual(crashed.lastError, "exited with code 2")
    assert.strictEqual(crashed.lastErrorReason, "Exited")
    assert.deepStrictEqual(
      [crashed.state, crashed.status, crashed.pid, crashed.uptimeMillis, crashed.totalCrashes, crashed.groups, crashed.envVars, crashed.supportedMethods],
      ["Disabled", "Failed", 42, 3_000, 3, ["g"], ["TOKEN", "EXTRA"], ["echo"]]
    )
  })
})

describe("DoctorReport (group summaries)", () => {
  const server = (serverName: string, status: GroupHealth.Status) => new GroupHealth.ServerHealth({ serverName, status, capabilities: [] })
  it("a group's summary counts its plugins in words", () => {
    const table: ReadonlyArray<readonly [ReadonlyArray<GroupHealth.Status>, string]> = [
      [[], "no plugins in this group"],
      [["Healthy"], "its plugin is healthy"],
      [["Failed"], "its plugin failed"],
      [["Healthy", "Healthy"], "all 2 plugins healthy"],
      [["Failed", "Failed", "Failed"], "all 3 plugins failed"],
      [["Healthy", "Failed"], "1 of 2 plugins healthy, 1 failed"],
      [["Degraded"], "0 of 1 plugin healthy, 1 degraded"],
      [["Healthy", "Degraded", "Failed"], "1 of 3 plugins healthy, 1 degraded, 1 failed"]
    ]
    for (const [statuses, summary] of table) {
      const check = GroupHealth.aggregate("g", statuses.map((status, i) => server(`p${i}`, status)), 7)
      const report = DoctorReport.GroupReport.fromHealthcheck(check)
      assert.strictEqual(report.summary, summary, statuses.join(","))
      assert.deepStrictEqual([report.group, report.status, report.checkedAt], ["g", check.state, 7])
    }
  })
  it("a group's report carries its lifecycle state; a stopped group says so instead of counting failures", () => {
    const check = GroupHealth.aggregate("g", [server("a", "Failed"), server("b", "Failed")], 7, { states: ["Stopped", "Stopped"] })
    const report = DoctorReport.GroupReport.fromHealthcheck(check)
    assert.deepStrictEqual([report.status, report.summary], ["Stopped", "all 2 plugins stopped"])
    const one = DoctorReport.GroupReport.fromHealthcheck(GroupHealth.aggregate("g", [server("a", "Failed")], 7, { states: ["Stopped"] }))
    assert.strictEqual(one.summary, "its plugin is stopped")
    const starting = DoctorReport.GroupReport.fromHealthcheck(GroupHealth.aggregate("g", [server("a", "Healthy")], 7, { phase: "Starting" }))
    assert.strictEqual(starting.status, "Starting")
  })

  it("degradedMode is in a group's report only when the group is degraded, and a report without it (or written before lifecycles) still decodes", () => {
    const capable = (serverName: string, status: GroupHealth.Status, tools: ReadonlyArray<string>) =>
      new GroupHealth.ServerHealth({ serverName, status, capabilities: [...tools] })
    const degraded = DoctorReport.GroupReport.fromHealthcheck(GroupHealth.aggregate("g", [capable("a", "Healthy", ["search"]), capable("b", "Failed", ["write"])], 7))
    assert.deepStrictEqual(
      [degraded.degradedMode?.available, degraded.degradedMode?.unavailable],
      [["search"], ["write"]],
      "without a discovery, the capabilities of the servers that are up"
    )
    const healthy = DoctorReport.GroupReport.fromHealthcheck(GroupHealth.aggregate("g", [capable("a", "Healthy", ["search"])], 7))
    const encoded = Schema.encodeSync(DoctorReport.GroupReport)(healthy)
    assert.isFalse("degradedMode" in encoded)
    assert.isFalse("discovery" in encoded)
    const old = { group: "g", status: "Failed", summary: "its plugin failed", plugins: [{ id: "a", status: "Failed" }], checkedAt: 1 }
    const decoded = Schema.decodeUnknownSync(DoctorReport.GroupReport)(old)
    assert.deepStrictEqual([decoded.status, decoded.degradedMode, decoded.discovery], ["Failed", undefined, undefined])
  })
})

describe("DoctorReport (containment)", () => {
  const report = (containment?: DoctorReport.Containment) =>
    new DoctorReport.DoctorReport({ generatedAt: 0, plugins: [], groups: [], ...(containment === undefined ? {} : { containment }) })

  it("says in one line how the host ends plugin trees, what can escape without a cgroup, and counts processes that outlived a stop", () => {
    const line = (containment?: DoctorReport.Containment) => DoctorReport.render(report(containment)).split("\n").filter((l) => l.startsWith("containment:"))
    assert.deepStrictEqual(line({ mode: "cgroup", escaped: 0 }), ["containment: cgroup (a plugin's whole tree ends with it)"])
    const [fallback] = line({ mode: "process tree", escaped: 0 })
    assert.include(fallback, "containment: process tree")
    assert.include(fallback, "can escape")
    assert.notInclude(fallback, "outlived")
    assert.include(line({ mode: "process tree", escaped: 2 })[0], "2 processes outlived a stop")
    assert.include(line({ mode: "cgroup", escaped: 1 })[0], "1 process outlived a stop")
    assert.deepStrictEqual(line(), [], "a report without the field (an older host's JSON) renders without the line")
  })

  it("says how to make moves into cgroups cheap when the cgroup2 mount lacks favordynmods, and nothing when it has it", () => {
    const lines = (containment: DoctorReport.Containment) => DoctorReport.render(report(containment)).split("\n").filter((l) => l.startsWith("cgroup moves:"))
    const [slow] = lines({ mode: "cgroup", escaped: 0, cgroupMount: { path: "/sys/fs/cgroup", favordynmods: false } })
    assert.include(slow, "grace period")
    assert.include(slow, "mount -o remount,favordynmods none /sys/fs/cgroup")
    assert.include(slow, "cgroup_favordynmods=true")
    assert.deepStrictEqual(lines({ mode: "cgroup", escaped: 0, cgroupMount: { path: "/sys/fs/cgroup", favordynmods: true } }), [])
    assert.deepStrictEqual(lines({ mode: "cgroup", escaped: 0 }), [], "nothing said where the mount is not known")
    assert.deepStrictEqual(lines({ mode: "process tree", escaped: 0, cgroupMount: { path: "/sys/fs/cgroup", favordynmods: false } }), [], "no line without cgroups")
  })
})

describe("DoctorReport (leftovers of hosts that died)", () => {
  const base = { generatedAt: 0, plugins: [], groups: [] }
  it("lists each process a dead host left and whether it was reaped; nothing when there was none", () => {
    const report = new DoctorReport.DoctorReport({
      ...base,
      leftovers: [{ plugin: "slow", pid: 41, reaped: true }, { plugin: "stuck", pid: 42, reaped: false }]
    })
    const text = DoctorReport.render(report)
    assert.include(text, "left running by hosts that died (1 of 2 reaped):")
    assert.include(text, "  slow pid 41: reaped")
    assert.include(text, "  stuck pid 42: still running after SIGKILL")
    assert.notInclude(DoctorReport.render(new DoctorReport.DoctorReport(base)), "left running")
  })

  it("round-trips through JSON with its leftovers; a report without the field still decodes", () => {
    const report = new DoctorReport.DoctorReport({ ...base, leftovers: [{ plugin: "slow", pid: 41, reaped: true }] })
    const decoded = Schema.decodeUnknownSync(DoctorReport.DoctorReport)(JSON.parse(JSON.stringify(Schema.encodeSync(DoctorReport.DoctorReport)(report))))
    assert.deepStrictEqual(decoded.leftovers, [{ plugin: "slow", pid: 41, reaped: true }])
    assert.isUndefined(Schema.decodeUnknownSync(DoctorReport.DoctorReport)(base).leftovers)
  })
})

describe("DoctorReport (verification)", () => {
  const withVerification = (verification: DoctorReport.Verification | undefined) =>
    DoctorReport.PluginDiagnosis.fromDiagnostics(diagnostics(snapshot({ _tag: "Idle" })), {
      server: GroupHealth.serverHealthOf("p", snapshot({ _tag: "Idle" })),
      groups: [],
      stderrTailLines: 0,
      verification
    })
  const lineOf = (verification: DoctorReport.Verification | undefined) =>
    DoctorReport.render(new DoctorReport.DoctorReport({ generatedAt: 0, plugins: [withVerification(verification)], groups: [] }))
      .split("\n")
      .filter((line) => line.startsWith("verification of"))

  it("one line per plugin with something unverified or changed; none when all is verified, or the executable is only undeclared", () => {
    const executable = { path: "/p/run", status: "verified" } as const
    const table: ReadonlyArray<readonly [string, DoctorReport.Verification | undefined, ReadonlyArray<string>]> = [
      ["not inspected", undefined, []],
      ["all verified", { executable, files: [{ path: "/p/a.py", status: "verified" }], flags: [] }, []],
      ["no checksum at all is the CHECKSUM column's to say", { executable: { path: "/p/run", status: "not declared" }, files: [], flags: [] }, []],
      [
        "an interpreter script, a changed file, a missing one",
        {
          executable: { path: "/usr/bin/python3", status: "not declared" },
          files: [{ path: "/p/a.py", status: "mismatch" }, { path: "/p/b.py", status: "missing" }],
          flags: [{ flag: "interpreter script not verified", file: "/p/main.py" }]
        },
        ["verification of p: /p/a.py mismatch; /p/b.py missing; interpreter script not verified: /p/main.py"]
      ],
      ["a changed executable", { executable: { path: "/p/run", status: "mismatch" }, files: [], flags: [] }, ["verification of p: executable mismatch"]]
    ]
    for (const [title, verification, lines] of table) assert.deepStrictEqual(lineOf(verification), lines, title)
    assert.deepStrictEqual(withVerification({ executable, files: [], flags: [] }).verification, { executable, files: [], flags: [] })
  })
})

describe("DoctorReport (remote plugins)", () => {
  const base = { generatedAt: 0, plugins: [], groups: [] }
  const instance = (id: string, extra: Partial<GroupHealth.RemoteInstance> = {}) =>
    new GroupHealth.RemoteInstance({ id, version: "1.0.0", latencyMillis: 0.42, requests: 10, errors: 0, ...extra })

  it("lists each remote plugin with its verdict and one line per instance; nothing without remotes", () => {
    const report = new DoctorReport.DoctorReport({
      ...base,
      remotes: [
        GroupHealth.remoteCheck({ plugin: "cal", service: "calendar", minInstances: 2 }, [
          instance("a"),
          instance("b", { latencyMillis: 25, errors: 2, lastError: "calendar\nlocked" })
        ], 0),
        GroupHealth.remoteCheck({ plugin: "mail", service: "mail", minInstances: 1 }, [], 0)
      ]
    })
    const text = DoctorReport.render(report)
    assert.include(text, "remote cal (NATS service calendar): Healthy - 2 instances (2 required)")
    assert.include(text, "  instance a v1.0.0: ping 0.4 ms, 10 requests, 0 errors\n")
    assert.include(text, "  instance b v1.0.0: ping 25 ms, 10 requests, 2 errors, last error: calendar locked")
    assert.include(text, "remote mail (NATS service mail): Failed - no instance answers")
    const decoded = Schema.decodeUnknownSync(DoctorReport.DoctorReport)(Schema.encodeSync(DoctorReport.DoctorReport)(report))
    assert.strictEqual(DoctorReport.render(decoded), text)
    assert.notInclude(DoctorReport.render(new DoctorReport.DoctorReport(base)), "remote ")
  })
})
