import { assert, describe, it } from "@effect/vitest"
import * as EndpointStats from "../../src/internal/endpointStats.ts"

describe("endpointStats", () => {
  it("counts requests, errors, the last error and the processing time in $SRV.STATS's shape", () => {
    const counter = EndpointStats.make("call", "plugins.cal.call", "q")
    assert.deepStrictEqual(counter.snapshot(), {
      name: "call",
      subject: "plugins.cal.call",
      queue_group: "q",
      num_requests: 0,
      num_errors: 0,
      last_error: "",
      processing_time: 0,
      average_processing_time: 0
    })
    counter.record(1_000)
    counter.record(3_000, "-32002: no")
    counter.record(2_000)
    assert.deepInclude(counter.snapshot(), {
      num_requests: 3,
      num_errors: 1,
      last_error: "-32002: no",
      processing_time: 6_000,
      average_processing_time: 2_000
    })
  })
})
