import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as VerifiedExecutable from "../../src/internal/verifiedExecutable.ts"
import { tempFolder, writeFile } from "../support/pluginFolder.ts"

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")
const modeOf = (file: string) => fs.lstatSync(file).mode & 0o7777

/** A plugin file and a cache root of its own, both in a fresh temporary folder. */
const setup = Effect.gen(function*() {
  const dir = yield* tempFolder("verified-executable-")
  const file = writeFile(dir, "plugin/run.sh", "#!/bin/sh\necho declared\n")
  fs.chmodSync(file, 0o755)
  return { dir, file, root: path.join(dir, "cache", "verified"), digest: sha256("#!/bin/sh\necho declared\n") }
})

describe("verifiedExecutable", () => {
  it("the cache lives under XDG_RUNTIME_DIR when it is set, else under the OS tmpdir named for the user", () => {
    assert.strictEqual(VerifiedExecutable.cacheRoot({ XDG_RUNTIME_DIR: "/run/user/1000" }), "/run/user/1000/effect-plugin-host/verified")
    for (const env of [{}, { XDG_RUNTIME_DIR: "" }, { XDG_RUNTIME_DIR: "relative/dir" }]) {
      assert.isTrue(VerifiedExecutable.cacheRoot(env).startsWith(path.join(os.tmpdir(), "effect-plugin-host-")), JSON.stringify(env))
    }
    assert.strictEqual(VerifiedExecutable.copyPathOf("/opt/p/run.sh", "AB".repeat(32), "/c"), `/c/${"ab".repeat(32)}/run.sh`)
  })

  it.effect("a verified copy is private and read-only, holds the hashed bytes, and is named by its digest", () =>
    Effect.gen(function*() {
      const { digest, file, root } = yield* setup
      const copy = yield* VerifiedExecutable.materialize(file, digest.toUpperCase(), root)
      assert.strictEqual(copy, path.join(root, digest, "run.sh"))
      assert.strictEqual(fs.readFileSync(copy, "utf8"), fs.readFileSync(file, "utf8"))
      assert.strictEqual(modeOf(copy), 0o500)
      for (const folder of [path.dirname(root), root, path.dirname(copy)]) assert.strictEqual(modeOf(folder), 0o700, folder)
      // No temporary file is left next to it.
      assert.deepStrictEqual(fs.readdirSync(path.dirname(copy)), ["run.sh"])
    }))

  it.effect("a changed file is a Mismatch with both digests, and nothing is cached for it", () =>
    Effect.gen(function*() {
      const { digest, file, root } = yield* setup
      fs.appendFileSync(file, "echo tampered\n")
      const failure = yield* VerifiedExecutable.materialize(file, digest, root).pipe(Effect.flip)
      assert.deepStrictEqual(failure, { _tag: "Mismatch", file, declared: digest, actual: sha256(fs.readFileSync(file, "utf8")) })
      assert.deepStrictEqual(fs.readdirSync(path.join(root, digest)), [])
    }))

  it.effect("a cached copy is reused while it still matches, and replaced when it was tampered with", () =>
    Effect.gen(function*() {
      const { digest, file, root } = yield* setup
      const copy = yield* VerifiedExecutable.materialize(file, digest, root)
      const inode = fs.statSync(copy).ino
      assert.strictEqual(yield* VerifiedExecutable.materialize(file, digest, root), copy)
      assert.strictEqual(fs.statSync(copy).ino, inode, "reused, not rewritten")
      fs.chmodSync(copy, 0o700)
      fs.writeFileSync(copy, "#!/bin/sh\necho swapped\n")
      fs.chmodSync(copy, 0o500)
      assert.strictEqual(yield* VerifiedExecutable.materialize(file, digest, root), copy)
      assert.strictEqual(fs.readFileSync(copy, "utf8"), fs.readFileSync(file, "utf8"))
      assert.notStrictEqual(fs.statSync(copy).ino, inode)
    }))

  it.effect("a cache folder that is a symlink is never trusted", () =>
    Effect.gen(function*() {
      const { digest, dir, file } = yield* setup
      const elsewhere = path.join(dir, "elsewhere")
      fs.mkdirSync(elsewhere, { mode: 0o700 })
      fs.mkdirSync(path.join(dir, "cache"), { mode: 0o700 })
      fs.symlinkSync(elsewhere, path.join(dir, "cache", "verified"))
      const failure = yield* VerifiedExecutable.materialize(file, digest, path.join(dir, "cache", "verified")).pipe(Effect.flip)
      assert.strictEqual(failure._tag, "Unusable")
      assert.include(failure._tag === "Unusable" ? failure.detail : "", "symlink")
      assert.deepStrictEqual(fs.readdirSync(elsewhere), [])
    }))

  it.effect("a missing file or a folder in its place is Unusable, never hashed as empty", () =>
    Effect.gen(function*() {
      const { digest, dir, root } = yield* setup
      const missing = yield* VerifiedExecutable.materialize(path.join(dir, "nope"), digest, root).pipe(Effect.flip)
      assert.deepStrictEqual(missing, { _tag: "Unusable", file: path.join(dir, "nope"), detail: "does not exist" })
      const folder = yield* VerifiedExecutable.hashInPlace(path.join(dir, "plugin")).pipe(Effect.flip)
      assert.strictEqual(folder.detail, "is not a regular file")
    }))
})
