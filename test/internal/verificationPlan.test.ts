import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as VerificationPlan from "../../src/internal/verificationPlan.ts"
import { tempFolder, writeFile } from "../support/pluginFolder.ts"
import { node } from "../support/processes.ts"

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

describe("verificationPlan", () => {
  it("interpreters by name, whatever their folder or version", () => {
    for (const name of ["python3", "/usr/bin/python3.12", "python", "node", "/opt/node/bin/node", "bash", "sh", "ruby", "perl", "deno", "bun"]) {
      assert.isTrue(VerificationPlan.isInterpreterName(name), name)
    }
    for (const name of ["my-plugin", "/usr/bin/vault", "nodes", "shell.sh", "python-tool"]) {
      assert.isFalse(VerificationPlan.isInterpreterName(name), name)
    }
  })

  it("a shebang is `#!` as the first two bytes; options are not file arguments", () => {
    assert.isTrue(VerificationPlan.hasShebang(Buffer.from("#!/bin/sh\n")))
    assert.isFalse(VerificationPlan.hasShebang(Buffer.from("\x7fELF")))
    assert.isFalse(VerificationPlan.hasShebang(Buffer.from("#")))
    assert.deepStrictEqual(VerificationPlan.fileArguments(["--inspect", "-u", "main.py", "", "config.toml"]), ["main.py", "config.toml"])
  })

  it("a file's status: verified in any case, mismatch, missing", () => {
    assert.strictEqual(VerificationPlan.statusOf("AB".repeat(32), "ab".repeat(32)), "verified")
    assert.strictEqual(VerificationPlan.statusOf("ab".repeat(32), "cd".repeat(32)), "mismatch")
    assert.strictEqual(VerificationPlan.statusOf("ab".repeat(32), undefined), "missing")
  })

  it.effect("an interpreter on an undeclared script is flagged; a declared one is verified, an edited one a mismatch", () =>
    Effect.gen(function*() {
      const dir = yield* tempFolder("verification-plan-")
      const script = writeFile(dir, "main.py", "print('hi')\n")
      const config = writeFile(dir, "config.toml", "a = 1\n")
      const undeclared = yield* VerificationPlan.inspect({ executable: "/usr/bin/python3", args: ["-u", "main.py", "not-a-file"] }, { dir, cwd: dir })
      assert.deepStrictEqual(undeclared, {
        executable: { path: "/usr/bin/python3", status: "not declared" },
        files: [],
        flags: [{ flag: "interpreter script not verified", file: script }]
      })
      const declared = yield* VerificationPlan.inspect({
        executable: node,
        args: ["main.py", "config.toml"],
        checksums: { "main.py": sha256("print('hi')\n"), "config.toml": sha256("other\n") }
      }, { dir, cwd: dir })
      assert.deepStrictEqual(declared.files, [{ path: script, status: "verified" }, { path: config, status: "mismatch" }])
      assert.deepStrictEqual(declared.flags, [])
    }))

  it.effect("the executable: verified by checksum_sha256, verified in place by checksums, a shebang script is an interpreter", () =>
    Effect.gen(function*() {
      const dir = yield* tempFolder("verification-plan-")
      const body = "#!/bin/sh\nexec cat\n"
      const run = writeFile(dir, "run.sh", body)
      writeFile(dir, "data.txt", "x\n")
      const pinned = yield* VerificationPlan.inspect({ executable: "run.sh", checksumSha256: sha256(body) }, { dir, cwd: dir })
      assert.deepStrictEqual(pinned.executable, { path: run, status: "verified" })
      const inPlace = yield* VerificationPlan.inspect({ executable: "run.sh", checksums: { "run.sh": sha256(body) } }, { dir, cwd: dir })
      assert.deepStrictEqual(inPlace.executable, { path: run, status: "verified in place" })
      fs.appendFileSync(run, "# edited\n")
      const edited = yield* VerificationPlan.inspect({ executable: "run.sh", checksumSha256: sha256(body), args: ["data.txt"] }, { dir, cwd: dir })
      assert.strictEqual(edited.executable.status, "mismatch")
      assert.deepStrictEqual(edited.flags, [{ flag: "interpreter script not verified", file: path.join(dir, "data.txt") }])
      const gone = yield* VerificationPlan.inspect({ executable: "gone.sh", checksumSha256: sha256(body) }, { dir, cwd: dir })
      assert.strictEqual(gone.executable.status, "missing")
    }))
})
