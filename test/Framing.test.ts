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
