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
    assert.include(depsOf("PluginWorker.ts"), "NatsBroker.ts", "mainBroker loads NatsBroker on demand")
    assert.include(depsOf("RpcPeer.ts"), "JsonRpc.ts")
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

  it("the pure codecs import no other module of the project", () => {
    for (const module of ["JsonRpc.ts", "Framing.ts", path.join("internal", "lineBatcher.ts")]) {
      assert.deepStrictEqual(depsOf(module), [], module)
    }
  })
})
