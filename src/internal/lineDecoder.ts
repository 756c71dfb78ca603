/**
 * The framing codec both sides of a connection run on every chunk: the line decoder (bounded
 * by `maxLineBytes`), the Content-Length decoder and the encoders, with no Stream in sight, so
 * a stdio worker loads it without `effect/Stream`. `Framing` re-exports all of it (the public
 * names and their documentation are `Framing`'s) and adds `Framing.frames`, the same decoder
 * over a `Stream`. The framing rules are in `Framing`'s header.
 *
 * @internal
 */
/**
 * The default bound on one line: 16 MiB.
 *
 * @category constants
 */
export const defaultMaxLineBytes = 16 * 1024 * 1024

/**
 * How messages are delimited on a byte stream: `"ndjson"`, one JSON text per line, or
 * `"content-length"`, LSP's base protocol (`Content-Length: N\r\n\r\n` then N bytes).
 *
 * @category models
 */
export type Mode = "ndjson" | "content-length"

/**
 * A line, a header block or a body longer than the bound (`part` says which). `bytes` is how
 * many bytes had been seen when it was cut (for a body, its declared length).
 *
 * @category models
 */
export interface Overflow {
  readonly _tag: "Overflow"
  readonly part: "line" | "header" | "body"
  readonly bytes: number
  readonly maxLineBytes: number
}

/**
 * A Content-Length header block that breaks the format: `detail` says how, `excerpt` is its
 * first 200 characters.
 *
 * @category models
 */
export interface Malformed {
  readonly _tag: "Malformed"
  readonly detail: string
  readonly excerpt: string
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

/**
 * What a message decoder yields: a message's text, an overflow, or a malformed header block.
 *
 * @category models
 */
export type MessageFrame = Frame | Malformed

/**
 * A stateful message decoder of either {@link Mode}; `push` calls `onFrame` for every complete
 * message in the chunk, `end` says the bytes are over. A {@link LineDecoder} is one.
 *
 * @category models
 */
export interface MessageDecoder {
  readonly push: (chunk: Uint8Array, onFrame: (frame: MessageFrame) => void) => void
  readonly end: (onFrame: (frame: MessageFrame) => void) => void
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
    onFrame({ _tag: "Overflow", part: "line", bytes, maxLineBytes })
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
      if (start === 0 && end === chunk.length - 1) {
        // The whole chunk (the usual one): decoded as it is, without a view of a part of it.
        const text = decoder.decode(chunk)
        if (end === nl) {
          emitText(text.slice(0, -1), onFrame)
        } else {
          const lines = text.split("\n")
          lines.pop()
          for (const line of lines) emitText(line, onFrame)
        }
      } else if (end === nl) {
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

// ---------------------------------------------------------------------------------------------
// Content-Length
// ---------------------------------------------------------------------------------------------

const TAB = 0x09
const HEADER_END = "\r\n\r\n"
const excerptChars = 200

const malformed = (detail: string, header: string): Malformed => ({
  _tag: "Malformed",
  detail,
  excerpt: header.slice(0, excerptChars)
})

/** A header name as HTTP spells a token. */
const headerName = /^[!#$%&'*+.^_`|~0-9a-z-]+$/
const charsetOf = /;\s*charset\s*=\s*"?([^";\s]+)/i

/** The body length a header block (without its blank line) declares, or what is wrong with it. */
const parseHeaderBlock = (block: string): number | string => {
  let length: number | undefined
  for (const line of block.split("\r\n")) {
    const colon = line.indexOf(":")
    const name = colon <= 0 ? "" : line.slice(0, colon).toLowerCase()
    if (!headerName.test(name)) return `a header line is not \`Name: value\`: ${JSON.stringify(line.slice(0, 80))}`
    if (line.includes("\r")) return "a header line has a \\r that does not end it"
    const value = line.slice(colon + 1).trim()
    if (name === "content-length") {
      if (length !== undefined) return "Content-Length is given twice"
      if (!/^[0-9]{1,15}$/.test(value)) return `Content-Length is not a byte count: ${JSON.stringify(value.slice(0, 40))}`
      length = Number(value)
    } else if (name === "content-type") {
      const charset = charsetOf.exec(value)?.[1]
      if (charset !== undefined && !/^utf-?8$/i.test(charset)) return `Content-Type names the charset ${charset}; only UTF-8 is read`
    }
  }
  return length ?? "the header block has no Content-Length"
}

/**
 * The state of one Content-Length stream: the header block being read, or the body being read
 * (kept, or skipped when over the bound), or broken for good.
 */
class ContentLengthDecoder implements MessageDecoder {
  private readonly decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true })
  /** The header block read so far (ASCII only). */
  private header = ""
  /** Body bytes still to come; -1 while a header block is being read. */
  private remaining = -1
  private body: Array<Uint8Array> = []
  private bodyBytes = 0
  /** Set while the body being read is over the bound: its bytes are dropped. */
  private skipping = false
  /** Set after an unrecoverable failure: nothing more is read. */
  private broken = false

  private readonly maxLineBytes: number

  constructor(maxLineBytes: number) {
    this.maxLineBytes = maxLineBytes
  }

  readonly push = (chunk: Uint8Array, onFrame: (frame: MessageFrame) => void): void => {
    let at = 0
    while (at < chunk.length && !this.broken) {
      at = this.remaining < 0 ? this.readHeader(chunk, at, onFrame) : this.readBody(chunk, at, onFrame)
    }
  }

  readonly end = (): void => {
    this.header = ""
    this.body = []
    this.bodyBytes = 0
    this.remaining = -1
    this.skipping = false
  }

  private fail(frame: MessageFrame, onFrame: (frame: MessageFrame) => void): void {
    this.broken = true
    this.header = ""
    this.body = []
    onFrame(frame)
  }

  /** Reads header bytes from `start`; returns where the body starts (or the chunk's end). */
  private readHeader(chunk: Uint8Array, start: number, onFrame: (frame: MessageFrame) => void): number {
    for (let i = start; i < chunk.length; i++) {
      const byte = chunk[i]!
      if (byte === NEWLINE && this.header.charCodeAt(this.header.length - 1) !== CARRIAGE_RETURN) {
        this.fail(malformed("a header line ends with \\n instead of \\r\\n", this.header), onFrame)
        return chunk.length
      }
      if (byte > 0x7e || (byte < 0x20 && byte !== TAB && byte !== CARRIAGE_RETURN && byte !== NEWLINE)) {
        const hex = byte.toString(16).padStart(2, "0")
        this.fail(malformed(`a header has the byte 0x${hex}, which is not printable ASCII`, this.header), onFrame)
        return chunk.length
      }
      this.header += String.fromCharCode(byte)
      if (this.header.length > this.maxLineBytes) {
        this.fail({ _tag: "Overflow", part: "header", bytes: this.header.length, maxLineBytes: this.maxLineBytes }, onFrame)
        return chunk.length
      }
      if (byte === NEWLINE && this.header.endsWith(HEADER_END)) {
        this.headerDone(onFrame)
        return i + 1
      }
    }
    return chunk.length
  }

  private headerDone(onFrame: (frame: MessageFrame) => void): void {
    const parsed = parseHeaderBlock(this.header.slice(0, -HEADER_END.length))
    if (typeof parsed === "string") return this.fail(malformed(parsed, this.header), onFrame)
    this.header = ""
    if (parsed === 0) return onFrame("")
    this.remaining = parsed
    if (parsed > this.maxLineBytes) {
      this.skipping = true
      onFrame({ _tag: "Overflow", part: "body", bytes: parsed, maxLineBytes: this.maxLineBytes })
    }
  }

  /** Reads body bytes from `start`; returns where the next header block starts (or the chunk's end). */
  private readBody(chunk: Uint8Array, start: number, onFrame: (frame: MessageFrame) => void): number {
    const take = Math.min(this.remaining, chunk.length - start)
    const last = take === this.remaining
    this.remaining = last ? -1 : this.remaining - take
    if (this.skipping) {
      if (last) this.skipping = false
    } else if (last && this.bodyBytes === 0) {
      onFrame(this.decoder.decode(chunk.subarray(start, start + take)))
    } else {
      // Copy: the producer may reuse its buffer after this call.
      this.body.push(chunk.slice(start, start + take))
      this.bodyBytes += take
      if (last) onFrame(this.decoder.decode(this.takeBody()))
    }
    return start + take
  }

  private takeBody(): Uint8Array {
    const all = new Uint8Array(this.bodyBytes)
    let offset = 0
    for (const part of this.body) {
      all.set(part, offset)
      offset += part.length
    }
    this.body = []
    this.bodyBytes = 0
    return all
  }
}

/**
 * Makes a decoder of LSP's base protocol: a header block of `Name: value` lines ended by `\r\n`
 * (`Content-Length` required, `Content-Type` optional and UTF-8 if it names a charset, others
 * ignored; names in any case), a blank line, then a body of exactly `Content-Length` bytes,
 * decoded as UTF-8 (invalid sequences become U+FFFD). The bounds and failures are in the module
 * header; a message left unfinished when the bytes end is dropped.
 *
 * @category constructors
 */
export const makeContentLengthDecoder = (options?: { readonly maxLineBytes?: number | undefined }): MessageDecoder =>
  new ContentLengthDecoder(options?.maxLineBytes ?? defaultMaxLineBytes)

/**
 * Makes the decoder of a {@link Mode}.
 *
 * @category constructors
 */
export const makeDecoder = (mode: Mode, options?: { readonly maxLineBytes?: number | undefined }): MessageDecoder =>
  mode === "content-length" ? makeContentLengthDecoder(options) : makeLineDecoder(options)

/**
 * The length in bytes of a text's UTF-8 encoding, without encoding it (a lone surrogate counts
 * as the 3 bytes of U+FFFD, as `TextEncoder` writes it).
 *
 * @category combinators
 */
export const utf8Length = (text: string): number => {
  let bytes = text.length
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) continue
    if (code < 0x800) {
      bytes += 1
    } else if (code >= 0xd800 && code <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // A surrogate pair: two UTF-16 units, four bytes.
      bytes += 2
      i++
    } else {
      bytes += 2
    }
  }
  return bytes
}

/**
 * Frames messages in a {@link Mode}, a whole batch as one string so a burst of messages costs
 * one write: each followed by `\n` (`"ndjson"`), or each after its `Content-Length` header
 * (`"content-length"`).
 *
 * @category combinators
 */
export const encodeMessages = (mode: Mode, messages: ReadonlyArray<string>): string => {
  if (mode === "ndjson") return messages.join("\n") + "\n"
  let out = ""
  for (const message of messages) out += `Content-Length: ${utf8Length(message)}\r\n\r\n${message}`
  return out
}

/**
 * The characters `message` takes on the wire once framed, as the queues that bound what waits
 * for a plugin count it (UTF-16 units, the framing's own characters included: a newline, or the
 * `Content-Length` header with its value's digits estimated from the message's length).
 *
 * @category combinators
 */
export const framedLength = (mode: Mode, message: string): number =>
  mode === "ndjson" ? message.length + 1 : message.length + contentLengthOverhead + String(message.length).length

/** `Content-Length: ` and the blank line after the header. */
const contentLengthOverhead = 20

/**
 * {@link encodeMessages} as bytes.
 *
 * @category combinators
 */
export const encode = (mode: Mode, messages: ReadonlyArray<string>): Uint8Array => textEncoder.encode(encodeMessages(mode, messages))

/**
 * Encodes lines for a byte sink: each line followed by `\n`, a whole batch as one buffer so a
 * burst of messages costs one write.
 *
 * @category combinators
 */
export const encodeLines = (lines: ReadonlyArray<string>): Uint8Array => textEncoder.encode(lines.join("\n") + "\n")

const textEncoder = new TextEncoder()
