/**
 * Framing: turning a byte stream into messages and messages into bytes, with a bound on each.
 *
 * Two framings are spoken ({@link Mode}): `"ndjson"`, one JSON text per line (the default), and
 * `"content-length"`, the base protocol of LSP and vscode-jsonrpc: `Content-Length: N\r\n`,
 * optional other headers (`Content-Type`), `\r\n`, then N bytes of UTF-8 JSON.
 * {@link makeDecoder} picks the decoder of a mode and {@link encodeMessages} the encoder.
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
 * The Content-Length decoder ({@link makeContentLengthDecoder}) has the same bound on a header
 * block and on a body: a body declared longer is reported as an {@link Overflow} and skipped
 * (its length is known), a header block longer is an `Overflow` after which nothing more is
 * read, and a header block that breaks the format (a line without a name, a missing, repeated or
 * non-numeric `Content-Length`, a charset other than UTF-8, a bare `\n`) is reported as a
 * {@link Malformed} frame, after which nothing more is read either: past a broken header there
 * is no telling where the next message starts.
 *
 * @since 0.1.0
 */
import type * as Arr from "effect/Array"
import * as Stream from "effect/Stream"
import { type Frame, makeLineDecoder } from "./internal/lineDecoder.ts"

export {
  defaultMaxLineBytes,
  makeLineDecoder,
  makeContentLengthDecoder,
  makeDecoder,
  utf8Length,
  encodeMessages,
  framedLength,
  encode,
  encodeLines
} from "./internal/lineDecoder.ts"
export type {
  Mode,
  Overflow,
  Malformed,
  Frame,
  LineDecoder,
  MessageFrame,
  MessageDecoder
} from "./internal/lineDecoder.ts"

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
