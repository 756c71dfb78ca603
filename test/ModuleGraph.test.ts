import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const src = path.join(import.meta.dirname, "..", "src")

/** Every `.ts` file under `src`, relative to it. */
const modules = (dir = ""): Array<string> =>
  fs.readdirSync(path.join(src, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name)
    if (entry.isDirectory()) return modules(relative)
    return entry.name.endsWith(".ts") ? [relative] : []
  })

/** The local modules a module imports: static, type-only and dynamic (`import("./X.ts")`) alike. */
const importsOf = (module: string): Array<string> => {
  const text = fs.readFileSync(path.join(src, module), "utf8")
  const specifiers = [...text.matchAll(/(?:from\s+|import\s*\(\s*)"(\.{1,2}\/[^"]+)"/g)].map((match) => match[1] ?? "")
  return specifiers.map((specifier) => path.join(path.dirname(module), specifier))
}

/**
 * The modules a module loads when it is loaded: its static imports and re-exports, except those
 * that import types only (`import type`, `{ type A, type B }`), which vanish from the JS. Dynamic
 * `import()`s load on demand and are not followed. Local modules as paths relative to `src`,
 * packages as written (`effect/Schema`).
 */
const valueImportsOf = (module: string): Array<string> => {
  const text = fs.readFileSync(path.join(src, module), "utf8")
  const clause = String.raw`(?:\*(?:\s+as\s+\w+)?|\{[^}]*\}|\w+(?:\s*,\s*(?:\{[^}]*\}|\*\s+as\s+\w+))?)`
  const statement = new RegExp(String.raw`^(?:import|export)\s+(type\s+)?(` + clause + String.raw`)\s+from\s+"([^"]+)"|^import\s+"([^"]+)"`, "gm")
  return [...text.matchAll(statement)].flatMap((match) => {
    const bare = match[4]
    if (bare !== undefined) return [bare]
    const names = match[2] ?? ""
    const typeOnly = match[1] !== undefined ||
      (names.startsWith("{") && names.slice(1, -1).split(",").every((name) => name.trim() === "" || name.trim().startsWith("type ")))
    if (typeOnly) return []
    const specifier = match[3] ?? ""
    return [specifier.startsWith(".") ? path.join(path.dirname(module), specifier) : specifier]
  })
}

/** A cycle in the import graph, as the modules along it, or undefined. */
const findCycle = (graph: ReadonlyMap<string, ReadonlyArray<string>>): Array<string> | undefined => {
  const done = new Set<string>()
  const visit = (module: string, trail: Array<string>): Array<string> | undefined => {
    const at = trail.indexOf(module)
    if (at >= 0) return [...trail.slice(at), module]
    if (done.has(module)) return undefined
    for (const next of graph.get(module) ?? []) {
      const cycle = visit(next, [...trail, module])
      if (cycle !== undefined) return cycle
    }
    done.add(module)
    return undefined
  }
  for (const module of graph.keys()) {
    const cycle = visit(module, [])
    if (cycle !== undefined) return cycle
  }
  return undefined
}

describe("module graph", () => {
  const graph = new Map(modules().map((module) => [module, importsOf(module)] as const))
  const depsOf = (module: string): Array<string> => [...(graph.get(module) ?? [])]

  it("reads the imports it checks (the scan is not vacuous)", () => {
    assert.include(depsOf("PluginWorker.ts"), "PluginWorkerBroker.ts", "the broker half is loaded on demand")
    assert.include(depsOf("PluginWorkerBroker.ts"), "NatsBroker.ts", "mainBroker loads NatsBroker on demand")
    assert.include(depsOf(path.join("internal", "rpcConnection.ts")), "JsonRpc.ts")
    assert.include(depsOf(path.join("internal", "protocol.ts")), "JsonRpc.ts")
  })

  it("dependencies point one way: no module imports, even dynamically, one that imports it back", () => {
    const cycle = findCycle(graph)
    assert.isUndefined(cycle, `import cycle: ${cycle?.join(" → ")}`)
  })

  it("the NATS transport imports no worker code", () => {
    assert.notInclude(depsOf("NatsBroker.ts"), "PluginWorker.ts")
  })

  it("the worker SDK and the contract it shares with the host reach no host-only module", () => {
    const reached = (module: string): Set<string> => {
      const seen = new Set<string>()
      const visit = (next: string) => {
        if (seen.has(next)) return
        seen.add(next)
        for (const dep of depsOf(next)) visit(dep)
      }
      visit(module)
      return seen
    }
    assert.include(depsOf("PluginWorker.ts"), "PluginContract.ts", "implement takes a contract")
    for (const module of ["PluginWorker.ts", "PluginContract.ts"]) {
      const deps = reached(module)
      for (const hostOnly of ["PluginClient.ts", "PluginManager.ts", "PluginHealth.ts", "Handshake.ts"]) {
        assert.isFalse(deps.has(hostOnly), `${module} reaches ${hostOnly}`)
      }
    }
  })

  describe("a stdio worker loads only what serving over stdio needs", () => {
    /** Every module loading `module` loads, itself included (local modules only; packages are leaves). */
    const loadedBy = (module: string): Set<string> => {
      const seen = new Set<string>()
      const visit = (next: string) => {
        if (seen.has(next)) return
        seen.add(next)
        for (const dep of valueImportsOf(next)) if (graph.has(dep)) visit(dep)
      }
      visit(module)
      return seen
    }
    const loaded = loadedBy("PluginWorker.ts")
    /** The loaded modules that load `specifier` (an `effect` module). */
    const loading = (specifier: string) => [...loaded].filter((module) => valueImportsOf(module).includes(specifier)).sort()

    it("the scan follows value imports only (it is not vacuous)", () => {
      assert.include([...loaded], path.join("internal", "requestServer.ts"))
      assert.include(valueImportsOf("RpcPeer.ts"), "effect/Effect")
      assert.notInclude(valueImportsOf(path.join("internal", "callTable.ts")), "effect/Clock", "`import type` is not a load")
      assert.isAbove(loaded.size, 10)
    })

    it("no broker or NATS code: the broker half of the SDK is loaded on demand", () => {
      for (const module of ["Broker.ts", "Poller.ts", path.join("internal", "brokerService.ts"), "NatsBroker.ts", "PluginWorkerBroker.ts"]) {
        assert.isFalse(loaded.has(module), `the stdio worker loads ${module}`)
      }
    })

    it("no Stream, Logger, Layer, FileSystem or Config (each loads a graph of its own: Config through ConfigProvider loads FileSystem and Stream)", () => {
      for (const heavy of ["effect/Stream", "effect/Logger", "effect/Layer", "effect/FileSystem", "effect/Config", "effect/ConfigProvider"]) {
        assert.deepStrictEqual(loading(heavy), [], `loaded by the stdio worker: ${heavy}`)
      }
    })

    it("effect/Schema only for the error classes (Schema.TaggedErrors by decision) and typed methods", () => {
      assert.deepStrictEqual(loading("effect/Schema"), [
        "JsonRpc.ts",
        "PluginClientError.ts",
        "PluginWorker.ts",
        path.join("internal", "invalidService.ts"),
        path.join("internal", "protocol.ts")
      ].sort())
    })
  })

  it("the pure codecs import no other module of the project", () => {
    for (const module of ["JsonRpc.ts", path.join("internal", "lineDecoder.ts"), path.join("internal", "lineBatcher.ts")]) {
      assert.deepStrictEqual(depsOf(module), [], module)
    }
    assert.deepStrictEqual([...new Set(depsOf("Framing.ts"))], [path.join("internal", "lineDecoder.ts")], "Framing adds its Stream to the codec")
  })
})
