import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Base64Url from "effect/encoding/Base64Url"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as Poller from "../src/Poller.ts"

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const bytes = (...values: Array<number>): Uint8Array => new Uint8Array(values)

const cursorOk = (text: string): Uint8Array => {
  const r = Poller.decodeCursor(text)
  if (Result.isFailure(r)) throw new Error(`expected ${JSON.stringify(text)} to decode, got: ${r.failure}`)
  return r.success
}

const cursorIssue = (text: string): string => {
  const r = Poller.decodeCursor(text)
  if (Result.isSuccess(r)) throw new Error(`expected ${JSON.stringify(text)} to be rejected, got ${r.success.length} bytes`)
  return r.failure
}

const ack = (r: Result.Result<Poller.TickAck, Poller.PollerError>): Poller.TickAck => {
  if (Result.isFailure(r)) throw new Error(`expected an ack, got: ${r.failure.message}`)
  return r.success
}

const failure = (r: Result.Result<Poller.TickAck, Poller.PollerError>): Poller.PollerError => {
  if (Result.isSuccess(r)) throw new Error(`expected a failure, got ${JSON.stringify(r.success)}`)
  return r.failure
}

const reasonOf = (r: Result.Result<Poller.TickAck, Poller.PollerError>): Poller.PollerErrorReason => failure(r).reason

const defaults: Poller.TickAck = { nextCursor: undefined, nextIntervalHint: undefined, metrics: { itemsSeen: 0, itemsDispatched: 0 } }

const sample: Poller.TickRequest = {
  kind: "rss",
  jobId: "job-1",
  agentId: "agent-7",
  cursor: undefined,
  config: { url: "https://example.com/feed", tags: ["a", "b"] },
  now: new Date(Date.UTC(2026, 10, 23, 18, 45, 0, 123)),
  intervalHint: Duration.minutes(5)
}

// ---------------------------------------------------------------------------------------------
// cursors
// ---------------------------------------------------------------------------------------------

describe("Poller cursors", () => {
  it("the empty cursor encodes to the empty string and back", () => {
    assert.strictEqual(Poller.encodeCursor(bytes()), "")
    const decoded = cursorOk("")
    assert.instanceOf(decoded, Uint8Array)
    assert.strictEqual(decoded.length, 0)
  })

  it("uses the URL-safe alphabet without padding", () => {
    // standard base64 of [0xfb, 0xff] is "+/8="
    assert.strictEqual(Poller.encodeCursor(bytes(0xfb, 0xff)), "-_8")
    assert.strictEqual(Poller.encodeCursor(new TextEncoder().encode("f")), "Zg")
    assert.deepStrictEqual(cursorOk("-_8"), bytes(0xfb, 0xff))
  })

  it("round-trips any 1..64 random bytes, and the text form has no padding or +/", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (input) => {
        const text = Poller.encodeCursor(input)
        assert.match(text, /^[A-Za-z0-9_-]+$/)
        assert.deepStrictEqual(cursorOk(text), input)
      })
    )
  })

  it("accepts the padded form of any cursor", () => {
    assert.deepStrictEqual(cursorOk("Zm8="), new TextEncoder().encode("fo"))
    assert.deepStrictEqual(cursorOk("Zg=="), new TextEncoder().encode("f"))
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 64 }), (input) => {
        assert.deepStrictEqual(cursorOk(Base64Url.encodePadded(input)), input)
      })
    )
  })

  it("rejects the standard-alphabet + and / with a hint", () => {
    const plus = cursorIssue("+/8=")
    assert.include(plus, "\"+\" at index 0")
    assert.include(plus, "standard base64")
    assert.include(cursorIssue("ab/c"), "\"/\" at index 2")
  })

  it("rejects characters outside the alphabet, naming the character and its index", () => {
    assert.include(cursorIssue("ab c"), "invalid character \" \" at index 2")
    assert.include(cursorIssue("Zg\n"), "invalid character \"\\n\" at index 2")
    assert.include(cursorIssue("Zm9v!"), "\"!\" at index 4")
    assert.include(cursorIssue("Zé"), "\"é\" at index 1")
  })

  it("rejects misplaced or excess padding", () => {
    assert.include(cursorIssue("Z=g="), "only allowed at the end")
    assert.include(cursorIssue("Zg="), "padded length 3 is not a multiple of 4")
    assert.include(cursorIssue("Zg==="), "too much padding")
  })

  it("rejects lengths that cannot encode whole bytes", () => {
    assert.include(cursorIssue("a"), "truncated")
    assert.include(cursorIssue("Zm9vY"), "truncated")
  })

  it("rejects non-canonical trailing bits, so a cursor string decodes to exactly one byte sequence", () => {
    // "Zg" and "Zh" differ only in bits that do not make it into the byte
    assert.deepStrictEqual(cursorOk("Zg"), bytes(0x66))
    assert.include(cursorIssue("Zh"), "non-zero leftover bits")
  })
})

// ---------------------------------------------------------------------------------------------
// now
// ---------------------------------------------------------------------------------------------

describe("Poller.formatNow", () => {
  it("writes RFC 3339 in UTC with +00:00 and milliseconds", () => {
    assert.strictEqual(Poller.formatNow(new Date(Date.UTC(2026, 10, 23, 18, 45, 0, 123))), "2026-11-23T18:45:00.123+00:00")
    assert.strictEqual(Poller.formatNow(new Date(Date.UTC(2026, 0, 1, 0, 0, 0, 0))), "2026-01-01T00:00:00.000+00:00")
    assert.strictEqual(Poller.formatNow(new Date(0)), "1970-01-01T00:00:00.000+00:00")
  })

  it("converts other offsets to UTC", () => {
    assert.strictEqual(Poller.formatNow(new Date("2024-02-29T23:59:59.999-05:00")), "2024-03-01T04:59:59.999+00:00")
  })

  it("refuses dates RFC 3339 cannot express", () => {
    assert.throws(() => Poller.formatNow(new Date(Number.NaN)), RangeError)
    assert.throws(() => Poller.formatNow(new Date(Date.UTC(10000, 0, 1))), RangeError)
    assert.throws(() => Poller.formatNow(new Date(Date.UTC(-1, 0, 1))), RangeError)
  })
})

// ---------------------------------------------------------------------------------------------
// requests
// ---------------------------------------------------------------------------------------------

describe("Poller tick requests", () => {
  it("a first run is one exact JSON-RPC line with snake_case params and cursor: null", () => {
    assert.strictEqual(
      Poller.tickRequestLine(sample),
      "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"poll_tick\",\"params\":{\"kind\":\"rss\",\"job_id\":\"job-1\",\"agent_id\":\"agent-7\",\"cursor\":null,\"config\":{\"url\":\"https://example.com/feed\",\"tags\":[\"a\",\"b\"]},\"now\":\"2026-11-23T18:45:00.123+00:00\",\"interval_hint_secs\":300}}"
    )
    assert.strictEqual(Poller.method, "poll_tick")
  })

  it("a later run carries the cursor as unpadded base64url and the given id", () => {
    const line = Poller.tickRequestLine({ ...sample, cursor: bytes(0xfb, 0xff), config: 7 }, "t-9")
    assert.notInclude(line, "\n")
    assert.deepStrictEqual(JSON.parse(line), {
      jsonrpc: "2.0",
      id: "t-9",
      method: "poll_tick",
      params: {
        kind: "rss",
        job_id: "job-1",
        agent_id: "agent-7",
        cursor: "-_8",
        config: 7,
        now: "2026-11-23T18:45:00.123+00:00",
        interval_hint_secs: 300
      }
    })
  })

  it("sends the interval hint in whole seconds, rounded down, and an undefined config as null", () => {
    const params = Poller.encodeTickParams({ ...sample, config: undefined, intervalHint: Duration.millis(90_999) })
    assert.strictEqual(params.interval_hint_secs, 90)
    assert.strictEqual(params.config, null)
    assert.strictEqual(params.cursor, null)
    assert.strictEqual(Poller.encodeTickParams({ ...sample, cursor: bytes() }).cursor, "")
    assert.strictEqual(Poller.encodeTickParams({ ...sample, intervalHint: Duration.zero }).interval_hint_secs, 0)
  })

  it("tickRequestLine throws on input that cannot be encoded; tickRequestLineResult returns a Config error", () => {
    const bad: Array<[Poller.TickRequest, string]> = [
      [{ ...sample, config: { n: 1n } }, "BigInt"],
      [{ ...sample, now: new Date(Number.NaN) }, "invalid Date"],
      [{ ...sample, intervalHint: Duration.infinity }, "finite"],
      [{ ...sample, intervalHint: Duration.seconds(-1) }, "negative"]
    ]
    for (const [request, mention] of bad) {
      assert.throws(() => Poller.tickRequestLine(request))
      const r = Poller.tickRequestLineResult(request)
      if (Result.isSuccess(r)) throw new Error(`expected a failure for ${mention}`)
      assert.strictEqual(r.failure.reason._tag, "Config")
      assert.strictEqual(r.failure.kind, "rss")
      assert.include(r.failure.message, "cannot encode the tick request")
      assert.include(r.failure.message, mention)
    }
    assert.deepStrictEqual(Poller.tickRequestLineResult(sample, 3), Result.succeed(Poller.tickRequestLine(sample, 3)))
  })
})

describe("Poller dialects", () => {
  const params = "{\"kind\":\"rss\",\"job_id\":\"job-1\",\"agent_id\":\"agent-7\",\"cursor\":null,\"config\":{\"url\":\"https://example.com/feed\",\"tags\":[\"a\",\"b\"]},\"now\":\"2026-11-23T18:45:00.123+00:00\",\"interval_hint_secs\":300}"

  it("nexo (the default) writes exactly nexo's envelope, without jsonrpc or id", () => {
    assert.strictEqual(Poller.defaultDialect, "nexo")
    assert.strictEqual(Poller.tickLine(sample, "nexo"), `{"method":"poll_tick","params":${params}}`)
    assert.deepStrictEqual(Poller.brokerPayload(sample, "nexo"), JSON.parse(`{"method":"poll_tick","params":${params}}`))
    assert.deepStrictEqual(Poller.ephemeralEnv("nexo", "rss-poller"), { NEXO_POLLER_EPHEMERAL: "1", NEXO_POLLER_PLUGIN_ID: "rss-poller" })
  })

  it("jsonrpc keeps the full JSON-RPC request line, POLLER_* names and bare params over a broker", () => {
    assert.strictEqual(Poller.tickLine(sample, "jsonrpc"), Poller.tickRequestLine(sample))
    assert.deepStrictEqual(Poller.brokerPayload(sample, "jsonrpc"), JSON.parse(params))
    assert.deepStrictEqual(Poller.ephemeralEnv("jsonrpc", "rss-poller"), { POLLER_EPHEMERAL: "1", POLLER_PLUGIN_ID: "rss-poller" })
  })

  it("a poller reads the params out of either payload", () => {
    for (const dialect of ["nexo", "jsonrpc"] as const) {
      assert.deepStrictEqual(Poller.tickParamsOf(Poller.brokerPayload(sample, dialect)), JSON.parse(params))
    }
    assert.deepStrictEqual(Poller.tickParamsOf({ method: "other", params: 1 }), { method: "other", params: 1 })
    assert.strictEqual(Poller.tickParamsOf(null), null)
  })
})

// ---------------------------------------------------------------------------------------------
// replies
// ---------------------------------------------------------------------------------------------

describe("Poller.decodeTickReply", () => {
  it("decodes a full reply", () => {
    const a = ack(Poller.decodeTickReply({
      next_cursor: "-_8",
      next_interval_secs: 120,
      metrics: { items_seen: 10, items_dispatched: 3 },
      extra: "ignored"
    }))
    assert.deepStrictEqual(a.nextCursor, bytes(0xfb, 0xff))
    assert.isDefined(a.nextIntervalHint)
    assert.strictEqual(Duration.toMillis(a.nextIntervalHint ?? Duration.zero), 120_000)
    assert.deepStrictEqual(a.metrics, { itemsSeen: 10, itemsDispatched: 3 })
  })

  it("an empty object, a null result and null fields all mean the defaults", () => {
    assert.deepStrictEqual(ack(Poller.decodeTickReply({})), defaults)
    assert.deepStrictEqual(ack(Poller.decodeTickReply(null)), defaults)
    assert.deepStrictEqual(
      ack(Poller.decodeTickReply({ next_cursor: null, next_interval_secs: null, metrics: null })),
      defaults
    )
    assert.deepStrictEqual(
      ack(Poller.decodeTickReply({ metrics: { items_seen: null } })),
      defaults
    )
  })

  it("next_cursor \"\" is a reset: an empty Uint8Array, not undefined", () => {
    const a = ack(Poller.decodeTickReply({ next_cursor: "" }))
    assert.instanceOf(a.nextCursor, Uint8Array)
    assert.strictEqual(a.nextCursor?.length, 0)
  })

  it("missing metrics default to 0 one by one; fractional and zero intervals are kept", () => {
    assert.deepStrictEqual(ack(Poller.decodeTickReply({ metrics: { items_seen: 4 } })).metrics, { itemsSeen: 4, itemsDispatched: 0 })
    assert.strictEqual(Duration.toMillis(ack(Poller.decodeTickReply({ next_interval_secs: 1.5 })).nextIntervalHint ?? Duration.infinity), 1500)
    assert.strictEqual(Duration.toMillis(ack(Poller.decodeTickReply({ next_interval_secs: 0 })).nextIntervalHint ?? Duration.infinity), 0)
  })

  it("a bad cursor is Transient and names the cursor problem", () => {
    const reason = reasonOf(Poller.decodeTickReply({ next_cursor: "+/8=" }))
    assert.strictEqual(reason._tag, "Transient")
    assert.include(reason.detail, "next_cursor")
    assert.include(reason.detail, "\"+\"")
    const wrongType = reasonOf(Poller.decodeTickReply({ next_cursor: 42 }))
    assert.strictEqual(wrongType._tag, "Transient")
    assert.include(wrongType.detail, "next_cursor must be a base64url string or null, got 42")
  })

  it("negative, non-integer or non-numeric metrics are Transient and every bad field is named", () => {
    const reason = reasonOf(Poller.decodeTickReply({ metrics: { items_seen: -1, items_dispatched: 1.5 } }))
    assert.strictEqual(reason._tag, "Transient")
    assert.include(reason.detail, "metrics.items_seen must be a non-negative integer, got -1")
    assert.include(reason.detail, "metrics.items_dispatched must be a non-negative integer, got 1.5")
    assert.include(reasonOf(Poller.decodeTickReply({ metrics: { items_seen: "3" } })).detail, "metrics.items_seen")
    assert.include(reasonOf(Poller.decodeTickReply({ metrics: 5 })).detail, "metrics must be an object or null, got 5")
  })

  it("a negative or non-numeric interval is Transient and names next_interval_secs", () => {
    for (const value of [-5, "60", true]) {
      const reason = reasonOf(Poller.decodeTickReply({ next_interval_secs: value }))
      assert.strictEqual(reason._tag, "Transient")
      assert.include(reason.detail, "next_interval_secs")
    }
  })

  it("a result that is not an object is Transient", () => {
    for (const value of [[], "ok", 5, true]) {
      const e = failure(Poller.decodeTickReply(value))
      assert.strictEqual(e.reason._tag, "Transient")
      assert.include(e.message, "tick reply must be an object")
    }
  })
})

describe("Poller.classifyError", () => {
  const table: Array<[number | undefined, Poller.PollerErrorReason["_tag"]]> = [
    [-32002, "Permanent"],
    [-32602, "Config"],
    [-32001, "Transient"],
    [-32000, "Transient"],
    [undefined, "Transient"],
    [-1, "Transient"]
  ]
  for (const [code, tag] of table) {
    it(`code ${code ?? "(none)"} is ${tag}, keeping the plugin's message`, () => {
      const reason = Poller.classifyError(code === undefined ? { message: "feed said no" } : { code, message: "feed said no" })
      assert.strictEqual(reason._tag, tag)
      assert.strictEqual(reason.detail, "feed said no")
      assert.strictEqual(reason.code, code)
    })
  }

  it("the constants name the codes plugins answer with", () => {
    assert.strictEqual(Poller.classifyError({ code: Poller.ErrorCode.Permanent, message: "x" })._tag, "Permanent")
    assert.strictEqual(Poller.classifyError({ code: Poller.ErrorCode.Config, message: "x" })._tag, "Config")
    assert.strictEqual(Poller.classifyError({ code: Poller.ErrorCode.Transient, message: "x" })._tag, "Transient")
  })

  it("a blank message gets a placeholder and a non-integer code is dropped, never thrown on", () => {
    const reason = Poller.classifyError({ code: 1.5, message: "  " })
    assert.strictEqual(reason._tag, "Transient")
    assert.strictEqual(reason.code, undefined)
    assert.include(reason.detail, "without a message")
  })
})

describe("Poller.decodeReplyEnvelope", () => {
  const result = { next_cursor: "AQ", metrics: { items_seen: 2, items_dispatched: 1 } }
  const expected: Poller.TickAck = { nextCursor: bytes(1), nextIntervalHint: undefined, metrics: { itemsSeen: 2, itemsDispatched: 1 } }

  it("unwraps {\"result\":…} with or without jsonrpc and id", () => {
    assert.deepStrictEqual(ack(Poller.decodeReplyEnvelope({ jsonrpc: "2.0", id: 1, result })), expected)
    assert.deepStrictEqual(ack(Poller.decodeReplyEnvelope({ result })), expected)
    assert.deepStrictEqual(ack(Poller.decodeReplyEnvelope({ id: "x", result: null })), defaults)
  })

  it("an {\"error\":…} envelope is a failure, never a reply with defaults (the nexo defect)", () => {
    for (const envelope of [
      { jsonrpc: "2.0", id: 1, error: { code: -32002, message: "feed deleted" } },
      { error: { code: -32002, message: "feed deleted" } }
    ]) {
      const e = failure(Poller.decodeReplyEnvelope(envelope))
      assert.strictEqual(e.reason._tag, "Permanent")
      assert.strictEqual(e.reason.detail, "feed deleted")
      assert.strictEqual(e.message, "poller: permanent: feed deleted (code -32002)")
    }
  })

  it("classifies error envelopes by code", () => {
    assert.strictEqual(reasonOf(Poller.decodeReplyEnvelope({ error: { code: -32602, message: "url missing" } }))._tag, "Config")
    assert.strictEqual(reasonOf(Poller.decodeReplyEnvelope({ error: { code: -32001, message: "rate limited" } }))._tag, "Transient")
    assert.strictEqual(reasonOf(Poller.decodeReplyEnvelope({ error: { code: -32000, message: "oops" } }))._tag, "Transient")
  })

  it("error values that are not {code, message} are transient with a readable detail", () => {
    const shaped = reasonOf(Poller.decodeReplyEnvelope({ error: { kind: "rate-limited", detail: "slow down" } }))
    assert.strictEqual(shaped._tag, "Transient")
    assert.strictEqual(shaped.detail, "rate-limited: slow down")
    assert.strictEqual(shaped.code, undefined)
    const text = reasonOf(Poller.decodeReplyEnvelope({ error: "boom" }))
    assert.strictEqual(text._tag, "Transient")
    assert.strictEqual(text.detail, "boom")
  })

  it("a null member counts as absent (JSON-RPC 1.0 style)", () => {
    assert.deepStrictEqual(ack(Poller.decodeReplyEnvelope({ result, error: null })), expected)
    assert.strictEqual(
      reasonOf(Poller.decodeReplyEnvelope({ result: null, error: { code: -32602, message: "bad" } }))._tag,
      "Config"
    )
  })

  it("malformed envelopes are Transient \"malformed reply\" errors", () => {
    const cases: Array<[unknown, string]> = [
      [[], "got an array"],
      [null, "got null"],
      ["ok", "got the string \"ok\""],
      [{ foo: 1 }, "neither a result nor an error"],
      [{ error: null }, "neither a result nor an error"],
      [{ jsonrpc: "2.0", method: "log", params: {} }, "neither a result nor an error"],
      [{ result: {}, error: { code: -32002, message: "x" } }, "both a result and an error"]
    ]
    for (const [value, mention] of cases) {
      const e = failure(Poller.decodeReplyEnvelope(value))
      assert.strictEqual(e.reason._tag, "Transient", JSON.stringify(value))
      assert.include(e.reason.detail, "malformed reply: ")
      assert.include(e.reason.detail, mention)
    }
    assert.include(reasonOf(Poller.decodeReplyEnvelope({ foo: 1 })).detail, "{\"foo\":1}")
  })

  it("quotes at most 200 characters of a malformed reply", () => {
    const detail = reasonOf(Poller.decodeReplyEnvelope({ foo: "x".repeat(10_000) })).detail
    const quoted = detail.slice(detail.indexOf("{\"foo\""))
    assert.isAtMost(quoted.length, 200)
    assert.isTrue(quoted.endsWith("…"))
  })
})

describe("Poller.decodeReplyLine", () => {
  it("an empty or blank line is Transient \"empty reply\"", () => {
    for (const line of ["", "   ", "\t\r\n"]) {
      const reason = reasonOf(Poller.decodeReplyLine(line))
      assert.strictEqual(reason._tag, "Transient")
      assert.strictEqual(reason.detail, "empty reply")
    }
  })

  it("a line that is not JSON is Transient and quoted", () => {
    const reason = reasonOf(Poller.decodeReplyLine("Traceback (most recent call last):"))
    assert.strictEqual(reason._tag, "Transient")
    assert.strictEqual(reason.detail, "reply is not JSON: Traceback (most recent call last):")
    const long = reasonOf(Poller.decodeReplyLine("z".repeat(5000))).detail
    assert.isAtMost(long.length, "reply is not JSON: ".length + 200)
  })

  it("a valid line is unwrapped and decoded, trailing newline included", () => {
    assert.deepStrictEqual(
      ack(Poller.decodeReplyLine("{\"result\":{\"metrics\":{\"items_seen\":2,\"items_dispatched\":2}}}\n")),
      { ...defaults, metrics: { itemsSeen: 2, itemsDispatched: 2 } }
    )
    assert.strictEqual(
      reasonOf(Poller.decodeReplyLine("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32002,\"message\":\"gone\"}}"))._tag,
      "Permanent"
    )
  })

  it("a JSON line that is not an envelope is a malformed reply", () => {
    assert.include(reasonOf(Poller.decodeReplyLine("[1,2]")).detail, "malformed reply")
  })
})

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

describe("Poller errors", () => {
  const timedOut = new Poller.Transient({ detail: "tick timed out after 5s" })

  it("PollerError names the poller and the plugin when known", () => {
    assert.strictEqual(
      Poller.PollerError.with(timedOut, { plugin: "rss-poller", kind: "rss" }).message,
      "poller `rss` (plugin `rss-poller`): transient: tick timed out after 5s"
    )
    assert.strictEqual(Poller.make(timedOut, { kind: "rss" }).message, "poller `rss`: transient: tick timed out after 5s")
    assert.strictEqual(
      Poller.make(timedOut, { plugin: "rss-poller" }).message,
      "poller plugin `rss-poller`: transient: tick timed out after 5s"
    )
    assert.strictEqual(Poller.make(timedOut).message, "poller: transient: tick timed out after 5s")
  })

  it("reason messages say the class and keep the plugin's code", () => {
    assert.strictEqual(new Poller.Config({ detail: "url missing" }).message, "config: url missing")
    assert.strictEqual(new Poller.Permanent({ detail: "gone", code: -32002 }).message, "permanent: gone (code -32002)")
  })

  it("undefined context fields are left out, and withContext adds context to a decoder's error", () => {
    const bare = Poller.make(timedOut, { plugin: undefined, kind: undefined })
    assert.isFalse("plugin" in bare)
    assert.isFalse("kind" in bare)
    const placed = bare.withContext({ plugin: "rss-poller", kind: "rss" })
    assert.strictEqual(placed.plugin, "rss-poller")
    assert.strictEqual(placed.kind, "rss")
    assert.strictEqual(placed.reason, timedOut)
    const kept = placed.withContext({ kind: "atom" })
    assert.strictEqual(kept.plugin, "rss-poller")
    assert.strictEqual(kept.kind, "atom")
  })

  it.effect("reasons are handled with Effect.catchReason", () =>
    Effect.gen(function*() {
      const handled = yield* Effect.fail(Poller.make(new Poller.Permanent({ detail: "gone" }), { kind: "rss" })).pipe(
        Effect.catchReason("PollerError", "Permanent", (reason) => Effect.succeed(`stop: ${reason.detail}`))
      )
      assert.strictEqual(handled, "stop: gone")
      const other = yield* Effect.fail(Poller.make(timedOut)).pipe(
        Effect.catchReason("PollerError", "Permanent", () => Effect.succeed("stop")),
        Effect.catchTag("PollerError", (e) => Effect.succeed(e.reason._tag))
      )
      assert.strictEqual(other, "Transient")
    }))

  it("PollerError survives a Schema round trip (loggable, sendable)", () => {
    const error = Poller.make(new Poller.Config({ detail: "bad url", code: -32602 }), { plugin: "p", kind: "rss" })
    const encoded = Schema.encodeSync(Poller.PollerError)(error)
    const decoded = Schema.decodeUnknownSync(Poller.PollerError)(JSON.parse(JSON.stringify(encoded)))
    assert.strictEqual(decoded.message, error.message)
    assert.strictEqual(decoded.reason._tag, "Config")
  })

  it("PollerRouteError messages", () => {
    assert.strictEqual(
      new Poller.PollerRouteError({ reason: new Poller.DuplicateKind({ kind: "rss", existingPlugin: "a", newPlugin: "b" }) }).message,
      "poller kind `rss` is already owned by plugin `a`; plugin `b` cannot claim it"
    )
    assert.strictEqual(
      new Poller.PollerRouteError({ reason: new Poller.InvalidRegistration({ plugin: "x", detail: "no [poller] section" }) }).message,
      "cannot register plugin `x` as a poller: no [poller] section"
    )
  })
})
