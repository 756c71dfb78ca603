import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as PluginEnvironment from "../../src/internal/pluginEnvironment.ts"

const fields = { allowed: "allowed_env_vars", env: "env", unsafe: "unsafe_env_vars" }

/** A folder with executable files, removed when the test's Scope closes. */
const folder = (files: Readonly<Record<string, string>>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "plugin-env-"))
      for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text, { mode: 0o755 })
      return dir
    }),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

describe("pluginEnvironment: names", () => {
  it("a name is letters, digits and `_`, not starting with a digit", () => {
    const table: ReadonlyArray<readonly [string, boolean]> = [
      ["PATH", true],
      ["_private", true],
      ["lower_case9", true],
      ["toString", true],
      ["", false],
      ["9LIVES", false],
      ["A=B", false],
      ["WITH SPACE", false],
      ["DASH-ED", false],
      ["toString()", false],
      ["ÜBER", false],
      ["NEW\nLINE", false]
    ]
    for (const [name, valid] of table) assert.strictEqual(PluginEnvironment.isEnvVarName(name), valid, JSON.stringify(name))
  })

  it("loader and interpreter-injection variables are recognised, prefixes included, case-sensitively", () => {
    const injection = [
      "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_DEBUG_OUTPUT", "DYLD_INSERT_LIBRARIES", "GCONV_PATH", "GLIBC_TUNABLES",
      "NODE_OPTIONS", "NODE_PATH", "NODE_COMPILE_CACHE", "PYTHONPYCACHEPREFIX", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONWARNINGS", "BASH_ENV", "ENV", "PS4",
      "PERL5OPT", "PERL5LIB", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "LUA_INIT"
    ]
    const ordinary = ["PATH", "HOME", "LANG", "NODE_ENV", "PYTHONUNBUFFERED", "ld_preload", "LDAP_URL", "ENVIRONMENT", "VAULT_TOKEN"]
    for (const name of injection) assert.isTrue(PluginEnvironment.isInjectionVariable(name), name)
    for (const name of ordinary) assert.isFalse(PluginEnvironment.isInjectionVariable(name), name)
  })

  it("problems name the field and the variable: a bad name, an unmarked injection variable; a marked one is fine", () => {
    const problems = (allowed: ReadonlyArray<string>, env: ReadonlyArray<string>, unsafe: ReadonlyArray<string>) =>
      PluginEnvironment.problems({ allowedEnvVars: allowed, envNames: env, unsafeEnvVars: unsafe }, fields)
    assert.deepStrictEqual(problems(["PATH", "HOME"], ["EXTRA"], []), [])
    assert.deepStrictEqual(problems(["NODE_OPTIONS"], [], ["NODE_OPTIONS"]), [])
    assert.deepStrictEqual(problems([], ["LD_PRELOAD"], ["LD_PRELOAD"]), [])
    const [badName] = problems(["A=B"], [], [])
    assert.include(badName, "`allowed_env_vars`")
    assert.include(badName, "\"A=B\" is not an environment variable name")
    const [unmarked] = problems(["NODE_OPTIONS"], [], [])
    assert.include(unmarked, "`allowed_env_vars`: `NODE_OPTIONS` is a loader/interpreter injection variable")
    assert.include(unmarked, "`unsafe_env_vars`")
    const [fromCode] = problems([], ["LD_PRELOAD"], ["NODE_OPTIONS"])
    assert.include(fromCode, "`env`: `LD_PRELOAD`")
    assert.lengthOf(problems([], ["BAD NAME"], ["no good"]), 2)
  })
})

describe("pluginEnvironment: the environment", () => {
  it("reads own properties only: names found on Object.prototype are never passed", () => {
    const env = PluginEnvironment.build(["toString", "constructor", "hasOwnProperty", "__proto__", "HOME"], { HOME: "/home/p" }, undefined)
    assert.deepStrictEqual(Object.keys(env), ["HOME"])
    assert.strictEqual(Object.getPrototypeOf(env), Object.prototype)
  })

  it("extra variables win and are own data properties, `__proto__` included (the prototype stays)", () => {
    const extra: Record<string, string> = JSON.parse(`{"__proto__": "x", "HOME": "/override"}`)
    const env = PluginEnvironment.build(["HOME", "MISSING"], { HOME: "/home/p" }, extra)
    assert.deepStrictEqual(Object.keys(env).sort(), ["HOME", "__proto__"])
    assert.strictEqual(env["HOME"], "/override")
    assert.isTrue(Object.hasOwn(env, "__proto__"))
    assert.strictEqual(Object.getPrototypeOf(env), Object.prototype)
  })

  it("the marked injection variables passed are those the environment has", () => {
    assert.deepStrictEqual(PluginEnvironment.unsafePassed({ NODE_OPTIONS: "", PATH: "/bin" }, ["NODE_OPTIONS", "LD_PRELOAD", "PATH"]), ["NODE_OPTIONS"])
  })
})

describe("pluginEnvironment: shebangs", () => {
  it("parses a shebang as the kernel does: the interpreter and one optional argument", () => {
    const table: ReadonlyArray<readonly [string, PluginEnvironment.Shebang | undefined]> = [
      ["#!/usr/bin/env node\nrest", { line: "#!/usr/bin/env node", interpreter: "/usr/bin/env", argument: "node" }],
      ["#! /bin/sh\r\n", { line: "#! /bin/sh", interpreter: "/bin/sh", argument: undefined }],
      ["#!/usr/bin/env -S node --flag", { line: "#!/usr/bin/env -S node --flag", interpreter: "/usr/bin/env", argument: "-S node --flag" }],
      ["#!", undefined],
      ["\u007fELF...", undefined],
      ["// no shebang", undefined]
    ]
    for (const [head, expected] of table) assert.deepStrictEqual(PluginEnvironment.parseShebang(head), expected, JSON.stringify(head))
  })

  it("the command of an env shebang: a name, or -S words; other options are not imitated", () => {
    const command = (line: string) => {
      const shebang = PluginEnvironment.parseShebang(line)
      return shebang === undefined ? undefined : PluginEnvironment.envCommand(shebang)
    }
    assert.deepStrictEqual(command("#!/usr/bin/env node"), ["node"])
    assert.deepStrictEqual(command("#!/usr/bin/env -S node --enable-source-maps"), ["node", "--enable-source-maps"])
    assert.strictEqual(command("#!/usr/bin/env -i node"), undefined)
    assert.strictEqual(command("#!/usr/bin/env"), undefined)
  })

  it.effect("without PATH, an env script runs on the interpreter the host's PATH finds, explicitly", () =>
    Effect.gen(function*() {
      const bin = yield* folder({ node: "#!/bin/sh\n" })
      const scripts = yield* folder({ "plugin.mjs": "#!/usr/bin/env -S node --flag\n" })
      const launch = yield* PluginEnvironment.prepare({
        executable: "./plugin.mjs",
        args: ["--stdio"],
        cwd: scripts,
        allowedEnvVars: ["HOME"],
        hostEnv: { HOME: "/home/p", PATH: `/nowhere:${bin}` }
      })
      assert.strictEqual(launch.executable, path.join(bin, "node"))
      assert.deepStrictEqual(launch.args, ["--flag", path.join(scripts, "plugin.mjs"), "--stdio"])
      assert.deepStrictEqual(launch.env, { HOME: "/home/p" })
      assert.deepStrictEqual(launch.interpreter, { shebang: "#!/usr/bin/env -S node --flag", resolved: path.join(bin, "node") })
    }))

  it.effect("with PATH passed, nothing is rewritten: env searches the plugin's own PATH", () =>
    Effect.gen(function*() {
      const scripts = yield* folder({ "plugin.mjs": "#!/usr/bin/env node\n" })
      const executable = path.join(scripts, "plugin.mjs")
      const launch = yield* PluginEnvironment.prepare({ executable, allowedEnvVars: ["PATH"], hostEnv: { PATH: "/usr/bin" } })
      assert.deepStrictEqual(launch, { executable, args: [], env: { PATH: "/usr/bin" }, interpreter: undefined })
    }))

  it.effect("a binary, an absolute interpreter and a file that is not there are left to the spawn", () =>
    Effect.gen(function*() {
      const scripts = yield* folder({ "tool.sh": "#!/bin/sh\necho hi\n", "binary": "\u007fELF\u0002\u0001" })
      for (const executable of [path.join(scripts, "tool.sh"), path.join(scripts, "binary"), path.join(scripts, "absent"), "no-such-command"]) {
        const launch = yield* PluginEnvironment.prepare({ executable, hostEnv: { PATH: scripts } })
        assert.deepStrictEqual(launch, { executable, args: [], env: {}, interpreter: undefined }, executable)
      }
    }))

  it.effect("an interpreter that cannot be found fails with a sentence naming it, never a silent switch", () =>
    Effect.gen(function*() {
      const scripts = yield* folder({
        "missing.mjs": "#!/usr/bin/env no-such-interpreter-7f3a\n",
        "absolute.sh": "#!/no/such/dir/sh\n",
        "option.sh": "#!/usr/bin/env -i sh\n"
      })
      const failure = (name: string) =>
        PluginEnvironment.prepare({ executable: path.join(scripts, name), hostEnv: { PATH: scripts } }).pipe(Effect.flip)
      const missing = yield* failure("missing.mjs")
      assert.include(missing, "the interpreter `no-such-interpreter-7f3a` named by the shebang of")
      assert.include(missing, "is not on the host's PATH")
      assert.include(yield* failure("absolute.sh"), "the interpreter `/no/such/dir/sh` named by the shebang")
      assert.include(yield* failure("option.sh"), "is not one the host can resolve")
    }))

  it.effect("bad names fail the launch before anything is read", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(PluginEnvironment.prepare({ executable: "x", env: { NODE_OPTIONS: "--require /tmp/evil.js" } }))
      assert.isTrue(Exit.isFailure(exit))
      const detail = yield* Effect.flip(PluginEnvironment.prepare({ executable: "x", allowedEnvVars: ["toString()"] }))
      assert.include(detail, "`allowedEnvVars`: \"toString()\" is not an environment variable name")
    }))

  it.effect("the doctor's view: marked variables passed, the resolved interpreter, or the problem", () =>
    Effect.gen(function*() {
      const bin = yield* folder({ node: "#!/bin/sh\n" })
      const scripts = yield* folder({ "plugin.mjs": "#!/usr/bin/env node\n" })
      const executable = path.join(scripts, "plugin.mjs")
      const hostEnv = { PATH: bin, NODE_OPTIONS: "--enable-source-maps" }
      const marked = yield* PluginEnvironment.describe({ executable, allowedEnvVars: ["NODE_OPTIONS"], unsafeEnvVars: ["NODE_OPTIONS"], hostEnv })
      assert.deepStrictEqual(marked, {
        unsafeEnvVars: ["NODE_OPTIONS"],
        interpreter: { shebang: "#!/usr/bin/env node", resolved: path.join(bin, "node") }
      })
      const unmarked = yield* PluginEnvironment.describe({ executable, allowedEnvVars: ["NODE_OPTIONS"], hostEnv })
      assert.deepStrictEqual(unmarked.unsafeEnvVars, [])
      assert.include(unmarked.problem, "`NODE_OPTIONS` is a loader/interpreter injection variable")
    }))
})
