import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as fc from "fast-check"
import * as Framing from "../src/Framing.ts"

const bytes = (s: string) => new TextEncoder().encode(s)

const frame = (chunks: ReadonlyArray<Uint8Array>, maxLineBytes?: number): Array<Framing.Frame> => {
  const out: Array<Framing.Frame> = []
  const decoder = Framing.makeLineDecoder({ maxLineBytes })
  for (const chunk of chunks) decoder.push(chunk, (f) => out.push(f))
  decoder.end((f) => out.push(f))
  return out
}

/**
 * The reference: split the whole input on "\n", drop one trailing "\r", skip blank lines, and
 * a line over the bound (counted in bytes, "\r" included) is an overflow, whatever the chunking.
 */
const model = (lines: ReadonlyArray<string>, terminated: boolean, maxLineBytes: number): Array<string> => {
  const out: Array<string> = []
  lines.forEach((line, i) => {
    if (!terminated && i === lines.length - 1 && line === "") return
    if (new TextEncoder().encode(line).length > maxLineBytes) return void out.push("<overflow>")
    const text = line.endsWith("\r") ? line.slice(0, -1) : line
    if ([...text].every((c) => c.charCodeAt(0) <= 32)) return
    out.push(text)
  })
  return out
}

describe("Framing", () => {
  it("matches the reference for any lines and any chunking (property)", () => {
    const line = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 12 }),
      fc.constantFrom("", " \t", "\r", "{\"a\":1}\r", "é€😀", "x".repeat(20)),
      fc.string({ unit: fc.constantFrom("a", "ü", "😀", " ", "\r"), maxLength: 30 })
    ).filter((l) => !l.includes("\n"))
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 12 }),
        fc.boolean(),
        fc.integer({ min: 4, max: 40 }),
        fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 8 }),
        (lines, terminated, maxLineBytes, cuts) => {
          const input = bytes(lines.join("\n") + (terminated && lines.length > 0 ? "\n" : ""))
          const chunks: Array<Uint8Array> = []
          for (let at = 0, i = 0; at < input.length; i++) {
            const size = cuts[i % cuts.length]!
            chunks.push(input.slice(at, at + size))
            at += size
          }
          const got = frame(chunks, maxLineBytes).map((f) => typeof f === "string" ? f : "<overflow>")
          assert.deepStrictEqual(got, model(lines, terminated || lines.length === 0, maxLineBytes))
        }
      ),
      { numRuns: 2000 }
    )
  })

  it("splits lines across chunk boundaries, including inside a UTF-8 sequence", () => {
    const all = bytes("{\"a\":\"€uro\"}\n{\"b\":2}\n")
    // Cut in the middle of the three bytes of "€".
    const cut = all.indexOf(0xe2) + 1
    assert.deepStrictEqual(frame([all.subarray(0, cut), all.subarray(cut)]), ["{\"a\":\"€uro\"}", "{\"b\":2}"])
  })

  it("handles \\r\\n, blank lines and a final line without a newline", () => {
    assert.deepStrictEqual(frame([bytes("one\r\n\n  \r\ntwo\nlast")]), ["one", "two", "last"])
  })

  it("turns invalid UTF-8 into replacement characters instead of failing", () => {
    assert.deepStrictEqual(frame([new Uint8Array([0xff, 0xfe, 0x41, 0x0a])]), ["\uFFFD\uFFFDA"])
  })

  it("reports an over-long line once, skips it, and resumes at the next line", () => {
    const frames = frame([bytes("short\n"), bytes("x".repeat(40)), bytes("y".repeat(40)), bytes("z\nafter\n")], 64)
    assert.strictEqual(frames.length, 3)
    assert.strictEqual(frames[0], "short")
    const overflow = frames[1]
    assert.isTrue(typeof overflow === "object" && overflow._tag === "Overflow" && overflow.maxLineBytes === 64)
    assert.strictEqual(frames[2], "after")
  })

  it("reports an over-long line that arrives whole in one chunk", () => {
    const frames = frame([bytes("a".repeat(100) + "\nok\n")], 64)
    assert.strictEqual(frames.length, 2)
    assert.isTrue(typeof frames[0] === "object")
    assert.strictEqual(frames[1], "ok")
  })

  it("accepts a line of exactly maxLineBytes", () => {
    assert.deepStrictEqual(frame([bytes("a".repeat(32)), bytes("a".repeat(32) + "\n")], 64), ["a".repeat(64)])
  })

  it("never holds more than maxLineBytes of an unfinished line", () => {
    const decoder = Framing.makeLineDecoder({ maxLineBytes: 1024 })
    const frames: Array<Framing.Frame> = []
    // 100 MiB without a newline: memory stays bounded because the decoder drops the line.
    const chunk = new Uint8Array(1024 * 1024).fill(0x61)
    for (let i = 0; i < 100; i++) decoder.push(chunk, (f) => frames.push(f))
    assert.strictEqual(frames.length, 1)
  })

  it.effect("frames a byte stream", () =>
    Effect.gen(function*() {
      const out = yield* Stream.fromIterable([bytes("a\nb"), bytes("c\n"), bytes("tail")]).pipe(
        Framing.frames(),
        Stream.runCollect
      )
      assert.deepStrictEqual(out, ["a", "bc", "tail"])
    }))

  it("encodes a batch of lines as one buffer", () => {
    assert.strictEqual(new TextDecoder().decode(Framing.encodeLines(["a", "b"])), "a\nb\n")
  })
})

const decodeAll = (chunks: ReadonlyArray<Uint8Array>, maxLineBytes?: number): Array<Framing.MessageFrame> => {
  const out: Array<Framing.MessageFrame> = []
  const decoder = Framing.makeContentLengthDecoder({ maxLineBytes })
  for (const chunk of chunks) decoder.push(chunk, (f) => out.push(f))
  decoder.end((f) => out.push(f))
  return out
}

/** Cuts `input` into chunks of the given sizes, in turn. */
const cut = (input: Uint8Array, sizes: ReadonlyArray<number>): Array<Uint8Array> => {
  const chunks: Array<Uint8Array> = []
  for (let at = 0, i = 0; at < input.length; i++) {
    const size = sizes[i % sizes.length]!
    chunks.push(input.slice(at, at + size))
    at += size
  }
  return chunks
}

const show = (frame: Framing.MessageFrame): string =>
  typeof frame === "string" ? frame : frame._tag === "Overflow" ? `<overflow ${frame.part}>` : `<malformed>`

/** One message as a peer may frame it: header names in any case, optional Content-Type. */
const framed = fc.record({
  body: fc.oneof(
    fc.string({ unit: "grapheme", maxLength: 30 }),
    fc.constantFrom("", "{\"jsonrpc\":\"2.0\",\"method\":\"x\"}", "é€😀\r\n", "Content-Length: 3\r\n\r\n")
  ),
  lengthName: fc.constantFrom("Content-Length", "content-length", "CONTENT-LENGTH"),
  contentType: fc.option(fc.constantFrom("application/vscode-jsonrpc; charset=utf-8", "application/json", "text/x; charset=\"UTF8\""))
})

const encodeFramed = (m: { body: string; lengthName: string; contentType: string | null }): string =>
  `${m.lengthName}: ${new TextEncoder().encode(m.body).length}\r\n${m.contentType === null ? "" : `Content-Type: ${m.contentType}\r\n`}\r\n${m.body}`

describe("Framing, Content-Length", () => {
  it("decodes any valid stream to its messages however it is split, bodies over the bound as overflows (property)", () => {
    fc.assert(
      fc.property(
        fc.array(framed, { maxLength: 10 }),
        fc.integer({ min: 8, max: 60 }),
        fc.array(fc.integer({ min: 1, max: 23 }), { minLength: 1, maxLength: 8 }),
        (messages, maxLineBytes, sizes) => {
          const input = bytes(messages.map(encodeFramed).join(""))
          // A header block over the bound ends reading; a body over it is skipped.
          const expected: Array<string> = []
          for (const m of messages) {
            const headerBytes = encodeFramed(m).length - m.body.length
            if (headerBytes > maxLineBytes) {
              expected.push("<overflow header>")
              break
            }
            expected.push(bytes(m.body).length > maxLineBytes ? "<overflow body>" : m.body)
          }
          assert.deepStrictEqual(decodeAll(cut(input, sizes), maxLineBytes).map(show), expected)
        }
      ),
      { numRuns: 2000 }
    )
  })

  it("yields the same frames for any split of any byte stream, garbage included (property)", () => {
    const piece = fc.oneof(
      framed.map(encodeFramed),
      fc.constantFrom("Content-Length: x\r\n\r\n", "\n", "garbage\r\n\r\n", "Content-Length: 2\n\n{}", "\u0000", "X: y\r\n"),
      fc.string({ maxLength: 8 })
    )
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 13 }), { minLength: 1, maxLength: 6 }),
        (pieces, sizes) => {
          const input = bytes(pieces.join(""))
          assert.deepStrictEqual(decodeAll(cut(input, sizes), 48).map(show), decodeAll([input], 48).map(show))
        }
      ),
      { numRuns: 2000 }
    )
  })

  it("encodes what it decodes, with the byte length of multi-byte bodies", () => {
    const messages = ["{\"a\":\"€\"}", "", "😀\u{d800}x"]
    const encoded = Framing.encodeMessages("content-length", messages)
    assert.isTrue(encoded.startsWith("Content-Length: 11\r\n\r\n{\"a\":\"€\"}Content-Length: 0\r\n\r\n"))
    assert.deepStrictEqual(decodeAll([Framing.encode("content-length", messages)]), ["{\"a\":\"€\"}", "", "😀\uFFFDx"])
    for (const text of messages) assert.strictEqual(Framing.utf8Length(text), new TextEncoder().encode(text).length)
  })

  it("reports a malformed header block once and reads nothing after it", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["Content-Length: 2\n\n{}", "\\n instead of \\r\\n"],
      ["Content-Type: application/json\r\n\r\n{}", "no Content-Length"],
      ["Content-Length: two\r\n\r\n{}", "not a byte count"],
      ["Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", "given twice"],
      ["Content-Length: 2\r\nContent-Type: text/plain; charset=latin1\r\n\r\n{}", "charset latin1"],
      ["{\"jsonrpc\":\"2.0\"}\r\n\r\n", "not `Name: value`"],
      ["Content-Length: 2\u0001\r\n\r\n{}", "0x01"]
    ]
    for (const [text, detail] of cases) {
      const frames = decodeAll([bytes(`Content-Length: 1\r\n\r\n1${text}Content-Length: 1\r\n\r\n2`)])
      assert.strictEqual(frames.length, 2, text)
      assert.strictEqual(frames[0], "1")
      const failure = frames[1]
      assert.isTrue(typeof failure === "object" && failure._tag === "Malformed" && failure.detail.includes(detail), `${text}: ${JSON.stringify(failure)}`)
    }
  })

  it("skips a body over the bound and reads the next message; a header block over it ends reading", () => {
    const big = "x".repeat(100)
    assert.deepStrictEqual(decodeAll([bytes(`Content-Length: 100\r\n\r\n${big}Content-Length: 2\r\n\r\nok`)], 64).map(show), ["<overflow body>", "ok"])
    const longHeader = `Content-Length: 2\r\nX-Padding: ${"p".repeat(100)}\r\n\r\n{}Content-Length: 2\r\n\r\nok`
    assert.deepStrictEqual(decodeAll([bytes(longHeader)], 64).map(show), ["<overflow header>"])
  })

  it("never holds more than maxLineBytes of a header block that does not end", () => {
    const decoder = Framing.makeContentLengthDecoder({ maxLineBytes: 1024 })
    const frames: Array<Framing.MessageFrame> = []
    const chunk = bytes("X-Header: " + "a".repeat(1024 * 1024))
    for (let i = 0; i < 20; i++) decoder.push(chunk, (f) => frames.push(f))
    assert.deepStrictEqual(frames.map(show), ["<overflow header>"])
  })

  it("drops a message left unfinished when the bytes end", () => {
    assert.deepStrictEqual(decodeAll([bytes("Content-Length: 2\r\n\r\n{}Content-Length: 9\r\n\r\n{\"a\"")]), ["{}"])
  })

  it("makeDecoder picks the decoder of the mode", () => {
    const out: Array<Framing.MessageFrame> = []
    Framing.makeDecoder("ndjson").push(bytes("a\nb\n"), (f) => out.push(f))
    Framing.makeDecoder("content-length").push(bytes("Content-Length: 1\r\n\r\nc"), (f) => out.push(f))
    assert.deepStrictEqual(out, ["a", "b", "c"])
    assert.strictEqual(new TextDecoder().decode(Framing.encode("ndjson", ["a", "b"])), "a\nb\n")
  })

  it("framedLength counts what a message takes on the wire: exactly, for ASCII messages, in both framings", () => {
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom(..."ab{}\":,0123456789"), maxLength: 20_000 }), (message) => {
      for (const mode of ["ndjson", "content-length"] as const) {
        assert.strictEqual(Framing.framedLength(mode, message), Framing.encode(mode, [message]).length)
      }
    }))
  })
})
