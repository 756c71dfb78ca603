/**
 * NDJSON framing: turning a byte stream into lines, with a bound on line length.
 *
 * A plugin that never writes a newline must not make the host buffer without limit, so a
 * {@link LineDecoder} holds at most `maxLineBytes` of an unfinished line; a longer line is
 * reported once as an {@link Overflow} and skipped up to its newline (a `\r` before the
 * newline counts towards the bound). Lines are split on the byte `\n` (which never occurs
 * inside a multi-byte UTF-8 sequence), so characters split across chunks decode correctly, and
 * a run of whole lines in one chunk is decoded with one call. `\r\n` endings, blank lines (only
 * spaces and control characters) and a final line without `\n` are handled. Invalid UTF-8
 * becomes U+FFFD instead of an exception.
 *
 * @since 0.1.0
 */
import type * as Arr from "effect/Array"
import * as Stream from "effect/Stream"

/**
 * The default bound on one line: 16 MiB.
 *
 * @category constants
 */
export const defaultMaxLineBytes = 16 * 1024 * 1024

/**
 * A line longer than the bound. `bytes` is how many bytes had been seen when it was cut.
 *
 * @category models
 */
export interface Overflow {
  readonly _tag: "Overflow"
  readonly bytes: number
  readonly maxLineBytes: number
}

/**
 * What framing yields: a complete line (without its line ending) or an overflow.
 *
 * @category models
 */
export type Frame = string | Overflow

/**
 * A stateful splitter; `push` calls `onFrame` for every complete line in the chunk, `end`
 * flushes a final line that had no newline.
 *
 * @category models
 */
export interface LineDecoder {
  readonly push: (chunk: Uint8Array, onFrame: (frame: Frame) => void) => void
  readonly end: (onFrame: (frame: Frame) => void) => void
}

/** Empty, or only spaces and control characters (JSON's whitespace is a subset). */
const isBlank = (line: string): boolean => {
  for (let i = 0; i < line.length; i++) if (line.charCodeAt(i) > 32) return false
  return true
}

const NEWLINE = 0x0a
const CARRIAGE_RETURN = 0x0d

/**
 * Makes a {@link LineDecoder}.
 *
 * @category constructors
 */
export const makeLineDecoder = (options?: { readonly maxLineBytes?: number | undefined }): LineDecoder => {
  const maxLineBytes = options?.maxLineBytes ?? defaultMaxLineBytes
  const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true })
  let pending: Array<Uint8Array> = []
  let pendingBytes = 0
  // Set while skipping the rest of an over-long line, until its newline.
  let discarding = false

  const emitText = (text: string, onFrame: (frame: Frame) => void) => {
    const line = text.charCodeAt(text.length - 1) === CARRIAGE_RETURN ? text.slice(0, -1) : text
    if (isBlank(line)) return
    onFrame(line)
  }

  const emit = (bytes: Uint8Array, onFrame: (frame: Frame) => void) => {
    if (bytes.length > 0) emitText(decoder.decode(bytes), onFrame)
  }

  const overflow = (bytes: number, onFrame: (frame: Frame) => void) => {
    pending = []
    pendingBytes = 0
    onFrame({ _tag: "Overflow", bytes, maxLineBytes })
  }

  const takePending = (tail: Uint8Array): Uint8Array => {
    const all = new Uint8Array(pendingBytes + tail.length)
    let offset = 0
    for (const part of pending) {
      all.set(part, offset)
      offset += part.length
    }
    all.set(tail, offset)
    pending = []
    pendingBytes = 0
    return all
  }

  const push = (chunk: Uint8Array, onFrame: (frame: Frame) => void) => {
    let start = 0
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start)
      if (nl === -1) {
        const rest = chunk.length - start
        if (discarding) return
        if (pendingBytes + rest > maxLineBytes) {
          discarding = true
          overflow(pendingBytes + rest, onFrame)
          return
        }
        // Copy: the producer may reuse its buffer after this call.
        pending.push(chunk.slice(start))
        pendingBytes += rest
        return
      }
      if (discarding) {
        discarding = false
        start = nl + 1
        continue
      }
      if (pendingBytes > 0) {
        const size = pendingBytes + (nl - start)
        if (size > maxLineBytes) overflow(size, onFrame)
        else emit(takePending(chunk.subarray(start, nl)), onFrame)
        start = nl + 1
        continue
      }
      if (nl - start > maxLineBytes) {
        overflow(nl - start, onFrame)
        start = nl + 1
        continue
      }
      // The common case: a run of whole lines within the bound, decoded with one call and
      // split on "\n" (a decoded "\n" is always a newline byte, never part of a character).
      let end = nl
      let next = chunk.indexOf(NEWLINE, end + 1)
      while (next !== -1 && next - end - 1 <= maxLineBytes) {
        end = next
        next = chunk.indexOf(NEWLINE, end + 1)
      }
      if (end === nl) {
        emit(chunk.subarray(start, nl), onFrame)
      } else {
        const lines = decoder.decode(chunk.subarray(start, end)).split("\n")
        for (const line of lines) emitText(line, onFrame)
      }
      start = end + 1
    }
  }

  const end = (onFrame: (frame: Frame) => void) => {
    if (!discarding && pendingBytes > 0) emit(takePending(new Uint8Array(0)), onFrame)
    pending = []
    pendingBytes = 0
    discarding = false
  }

  return { push, end }
}

/**
 * Frames a byte stream into lines and overflows.
 *
 * @category combinators
 */
export const frames = (options?: { readonly maxLineBytes?: number | undefined }) =>
<E, R>(self: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Frame, E, R> =>
  Stream.suspend(() => {
    const decoder = makeLineDecoder(options)
    return self.pipe(
      Stream.mapAccumArray(
        () => undefined,
        (state, chunks: Arr.NonEmptyReadonlyArray<Uint8Array>) => {
          const out: Array<Frame> = []
          const onFrame = (frame: Frame) => void out.push(frame)
          for (const chunk of chunks) decoder.push(chunk, onFrame)
          return [state, out] as const
        },
        {
          onHalt: () => {
            const out: Array<Frame> = []
            decoder.end((frame) => void out.push(frame))
            return out
          }
        }
      )
    )
  })

/**
 * Encodes lines for a byte sink: each line followed by `\n`, a whole batch as one buffer so a
 * burst of messages costs one write.
 *
 * @category combinators
 */
export const encodeLines = (lines: ReadonlyArray<string>): Uint8Array => textEncoder.encode(lines.join("\n") + "\n")

const textEncoder = new TextEncoder()
