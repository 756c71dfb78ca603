import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Handshake from "../src/Handshake.ts"
import * as HostVersion from "../src/internal/hostVersion.ts"

const plugin: Handshake.PluginIdentity = { name: "vault", version: "1.2.3", executable: "/opt/plugins/vault" }

const paramsOf = (handshake: Handshake.Handshake): unknown => {
  if (handshake._tag !== "Request") throw new Error("expected a request handshake")
  return handshake.params
}

describe("Handshake presets", () => {
  it("secretSource sends devboy's init params: source_name (the plugin's name by default), config, protocol_version 1.0", () => {
    const bound = Handshake.forPlugin(Handshake.secretSource({ address: "https://vault.invalid" }), plugin)
    assert.strictEqual(bound._tag === "Request" ? bound.method : undefined, "secret_source.init")
    assert.deepStrictEqual(paramsOf(bound), { source_name: "vault", config: { address: "https://vault.invalid" }, protocol_version: "1.0" })
    assert.deepStrictEqual(
      paramsOf(Handshake.forPlugin(Handshake.secretSource(undefined, { sourceName: "team", protocolVersion: "1.1" }), plugin)),
      { source_name: "team", config: {}, protocol_version: "1.1" }
    )
  })

  it("paperclip sends {manifest, config, instanceInfo, apiVersion}, a manifest made from the plugin's by default, and logs stderr at Warn", () => {
    const bound = Handshake.forPlugin(Handshake.paperclip(), plugin)
    const params = paramsOf(bound) as { manifest: unknown; config: unknown; instanceInfo: Handshake.InstanceInfo; apiVersion: number }
    assert.deepStrictEqual(params, {
      manifest: { id: "vault", apiVersion: 1, version: "1.2.3", displayName: "vault", entrypoints: { worker: "/opt/plugins/vault" } },
      config: {},
      instanceInfo: { instanceId: params.instanceInfo.instanceId, hostVersion: HostVersion.version },
      apiVersion: 1
    })
    const again = paramsOf(Handshake.forPlugin(Handshake.paperclip(), { name: "other", executable: "x" })) as typeof params
    assert.strictEqual(again.instanceInfo.instanceId, params.instanceInfo.instanceId, "one instance id per host process")
    assert.strictEqual(Handshake.stderrLogLevel(bound), "Warn")
    assert.strictEqual(Handshake.stderrLogLevel(Handshake.initialize()), undefined)
    assert.strictEqual(Handshake.stderrLogLevel(Handshake.none), undefined)
  })

  it.effect("paperclip checks the answer like initialize: ok: false is a refusal", () =>
    Effect.gen(function*() {
      const handshake = Handshake.paperclip()
      if (handshake._tag !== "Request") throw new Error("expected a request handshake")
      assert.deepStrictEqual(yield* handshake.validate({ ok: true, supportedMethods: ["health"] }), { supportedMethods: ["health"] })
      assert.include(yield* Effect.flip(handshake.validate({ ok: false, error: "no licence" })), "ok: false")
    }))

  it("forPlugin leaves handshakes without plugin-dependent params unchanged", () => {
    const fixed = Handshake.initialize({ a: 1 })
    assert.strictEqual(Handshake.forPlugin(fixed, plugin), fixed)
    assert.strictEqual(Handshake.forPlugin(Handshake.none, plugin), Handshake.none)
  })

  it("the host version reported to plugins is the package's", () => {
    const pkg = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, "../package.json"), "utf8")) as { version: string }
    assert.strictEqual(HostVersion.version, pkg.version)
  })
})
