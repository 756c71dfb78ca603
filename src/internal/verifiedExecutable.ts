/**
 * Verified executables: the bytes that are hashed are the bytes that execute.
 *
 * This module owns the host-private, read-only, content-addressed cache an executable with a
 * declared `checksum_sha256` is run from ({@link materialize}), and hashing a file through one
 * open descriptor ({@link hashInPlace}), which `checksums` entries are verified with.
 *
 * How: the executable is opened once (a symlink is followed at that moment, so a retargeted link
 * is hashed as what it points to now) and streamed from that descriptor into a new file in the
 * cache while it is hashed. Only when that digest is the declared one is the copy made read-only
 * (0500) and renamed to `<cache>/<sha256>/<basename>`; it is then hashed again from the copy, and
 * the copy is what is spawned. A later spawn still hashes the original (a changed file fails the
 * start with `ChecksumMismatch`) but reuses the copy when it is a regular file of ours, 0500,
 * with one link, whose digest is still the declared one; anything else is replaced. The cache is
 * `$XDG_RUNTIME_DIR/effect-plugin-host/verified` (else `<os tmpdir>/effect-plugin-host-<uid>/verified`),
 * every folder 0700 and owned by the host's user: a folder that is a symlink or belongs to someone
 * else fails the start rather than be trusted.
 *
 * Why a copy and not `/proc/self/fd/N`: the descriptor would have to reach the child (an extra
 * inherited fd in every plugin), a script's interpreter would re-open the path the kernel gives it,
 * and Node resolves its main module through `realpath`, back to the original path — the race
 * again. A copy has none of that, and content addressing makes it cheap to reuse.
 *
 * What the copy breaks: the process runs from the cache, so `argv[0]`, `/proc/self/exe`,
 * `__file__`, `import.meta.url` and `$0` name the copy (the basename is kept). A binary that
 * looks for files next to itself, or a script with relative imports (`./lib.mjs`, sibling Python
 * modules, `node_modules` found by walking up), does not find them. Such a plugin declares its
 * entry file in `checksums` instead (verified in place, see below) or runs an interpreter on it.
 *
 * What is not guaranteed: files named in `checksums` are hashed in place, through one descriptor,
 * before every spawn; the interpreter opens them again by path afterwards, so a swap in that
 * window is not caught (an edit made before the spawn is). The cache is protected from other
 * users, not from the host's own user (who could change the host itself). Nothing is evicted: one
 * copy per distinct executable content (and an empty folder per declared digest a start was
 * refused for: removing it could race a concurrent start of the same digest), gone with the
 * runtime folder (logout, reboot).
 *
 * @internal
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"

/** The file's content is not the declared one. Digests are lowercase hex. */
export interface Mismatch {
  readonly _tag: "Mismatch"
  readonly file: string
  readonly declared: string
  readonly actual: string
}

/** The file (or the cache) cannot be used: missing, not a regular file, unreadable, unsafe. */
export interface Unusable {
  readonly _tag: "Unusable"
  readonly file: string
  readonly detail: string
}

export type Failure = Mismatch | Unusable

class Refused extends Error {
  readonly failure: Failure
  constructor(failure: Failure) {
    super(failure._tag === "Mismatch" ? `checksum mismatch for ${failure.file}` : `${failure.file}: ${failure.detail}`)
    this.failure = failure
  }
}

const unusable = (file: string, detail: string) => new Refused({ _tag: "Unusable", file, detail })

const chunkBytes = 64 * 1024

/** Streams an open file through SHA-256, handing every chunk to `sink` too. */
const digestOf = async (handle: fsp.FileHandle, sink?: (chunk: Uint8Array) => Promise<unknown>): Promise<string> => {
  const hash = createHash("sha256")
  const buffer = Buffer.allocUnsafe(chunkBytes)
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, chunkBytes, null)
    if (bytesRead === 0) return hash.digest("hex")
    const chunk = buffer.subarray(0, bytesRead)
    hash.update(chunk)
    if (sink !== undefined) await sink(chunk)
  }
}

/** Opens `file` for reading (O_NONBLOCK: a FIFO put in its place never blocks) and checks it is a regular file. */
const openRegular = async (file: string, extraFlags = 0): Promise<fsp.FileHandle> => {
  const handle = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | extraFlags).catch((error: unknown) => {
    throw unusable(file, isCode(error, "ENOENT") ? "does not exist" : `cannot be read: ${messageOf(error)}`)
  })
  const info = await handle.stat()
  if (!info.isFile()) {
    await handle.close()
    throw unusable(file, "is not a regular file")
  }
  return handle
}

const isCode = (error: unknown, code: string): boolean =>
  typeof error === "object" && error !== null && "code" in error && error.code === code

const messageOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

const hashFile = async (file: string, extraFlags = 0): Promise<string> => {
  const handle = await openRegular(file, extraFlags)
  try {
    return await digestOf(handle)
  } finally {
    await handle.close()
  }
}

/** The user the cache must belong to (`undefined` where the platform has no uids). */
const uid = (): number | undefined => process.getuid?.()

/**
 * The cache folder: under `$XDG_RUNTIME_DIR` when set (private to the user by definition),
 * else under the OS temporary folder, named for the user.
 */
export const cacheRoot = (env: Readonly<Record<string, string | undefined>> = process.env): string => {
  const runtime = env["XDG_RUNTIME_DIR"]
  return runtime !== undefined && runtime !== "" && path.isAbsolute(runtime)
    ? path.join(runtime, "effect-plugin-host", "verified")
    : path.join(os.tmpdir(), `effect-plugin-host-${uid() ?? "user"}`, "verified")
}

/** Creates `dir` (0700) if needed and checks it is a real folder of ours that nobody else can write. */
const privateFolder = async (dir: string): Promise<void> => {
  await fsp.mkdir(dir, { mode: 0o700 }).catch((error: unknown) => {
    if (!isCode(error, "EEXIST")) throw unusable(dir, `cannot be created: ${messageOf(error)}`)
  })
  const info = await fsp.lstat(dir)
  if (!info.isDirectory()) throw unusable(dir, "is not a folder (a symlink or a file is never trusted as the verified cache)")
  const me = uid()
  if (me !== undefined && info.uid !== me) throw unusable(dir, `belongs to uid ${info.uid}, not to the host's uid ${me}`)
  if ((info.mode & 0o077) !== 0) await fsp.chmod(dir, 0o700)
}

/** The cache folders from the top one down to `dir`, each checked. */
const privateFolders = async (root: string, digest: string): Promise<void> => {
  const top = path.dirname(root)
  // The runtime folder (or the tmpdir) above `top` is the OS's; only ours are checked.
  await privateFolder(top)
  await privateFolder(root)
  await privateFolder(path.join(root, digest))
}

/** Whether `copy` is a cached copy we can trust to hold `declared`. */
const reusable = async (copy: string, declared: string): Promise<boolean> => {
  const info = await fsp.lstat(copy).catch(() => undefined)
  if (info === undefined || !info.isFile() || info.nlink !== 1 || (info.mode & 0o7777) !== 0o500) return false
  const me = uid()
  if (me !== undefined && info.uid !== me) return false
  const actual = await hashFile(copy, fs.constants.O_NOFOLLOW).catch(() => undefined)
  return actual === declared
}

/** Copies the open source into `dir` under a fresh name, hashing what it writes; returns the temporary name and the digest. */
const copyInto = async (source: fsp.FileHandle, dir: string, base: string): Promise<{ readonly temp: string; readonly actual: string }> => {
  const temp = path.join(dir, `.${base}.${randomBytes(6).toString("hex")}.tmp`)
  const out = await fsp.open(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
  try {
    const actual = await digestOf(source, (chunk) => out.write(chunk))
    await out.chmod(0o500)
    return { temp, actual }
  } catch (error) {
    await fsp.rm(temp, { force: true })
    throw error
  } finally {
    await out.close()
  }
}

/** Where the verified copy of `file` with SHA-256 `digest` lives: `<root>/<digest>/<basename>`. */
export const copyPathOf = (file: string, digest: string, root: string = cacheRoot()): string =>
  path.join(root, digest.toLowerCase(), path.basename(file))

const materializeAsync = async (file: string, declared: string, root: string): Promise<string> => {
  const source = await openRegular(file)
  try {
    await privateFolders(root, declared)
    const copy = copyPathOf(file, declared, root)
    const dir = path.dirname(copy)
    if (await reusable(copy, declared)) {
      const actual = await digestOf(source)
      if (actual !== declared) throw new Refused({ _tag: "Mismatch", file, declared, actual })
      return copy
    }
    const { actual, temp } = await copyInto(source, dir, path.basename(file))
    if (actual !== declared) {
      await fsp.rm(temp, { force: true })
      throw new Refused({ _tag: "Mismatch", file, declared, actual })
    }
    await fsp.rename(temp, copy)
    // Read back what will run: the copy itself must hold the declared bytes.
    const copied = await hashFile(copy, fs.constants.O_NOFOLLOW)
    if (copied !== declared) throw unusable(copy, `the verified copy hashes to ${copied}, not ${declared}`)
    return copy
  } finally {
    await source.close()
  }
}

const toFailure = (file: string) => (error: unknown): Failure =>
  error instanceof Refused ? error.failure : { _tag: "Unusable", file, detail: messageOf(error) }

/**
 * Hashes `file` through one descriptor and, when its SHA-256 is `declared` (any case), returns
 * the path of a private read-only copy holding exactly the bytes that were hashed: the path to
 * spawn. Fails with `Mismatch` when the content differs, `Unusable` when the file or the cache
 * cannot be used. `root` is the cache folder (default {@link cacheRoot}).
 */
export const materialize = (file: string, declared: string, root: string = cacheRoot()): Effect.Effect<string, Failure> =>
  Effect.tryPromise({ try: () => materializeAsync(file, declared.toLowerCase(), root), catch: toFailure(file) })

/**
 * The SHA-256 (lowercase hex) of a regular file, read through one descriptor. Fails with
 * `Unusable` when it is missing, not a regular file or unreadable.
 */
export const hashInPlace = (file: string): Effect.Effect<string, Unusable> =>
  Effect.tryPromise({
    try: () => hashFile(file),
    catch: (error): Unusable => {
      const failure = toFailure(file)(error)
      return failure._tag === "Unusable" ? failure : { _tag: "Unusable", file, detail: "unexpected mismatch" }
    }
  })
