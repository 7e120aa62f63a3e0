/**
 * Request/response framing over TCP (Node `net`): p2p calls between members and calls from
 * external clients. Frame format in frame.ts; bodies are opaque bytes (codec.ts encodes them).
 * This module is the entry point; the parts live in wire-server.ts, wire-client.ts,
 * frame-reader.ts and frame-writer.ts.
 *
 * - Multiplexed: a connection carries any number of requests; replies come back in any order,
 *   matched by request id. The `kind` (u16) in every frame is the layer above's to define (which
 *   method, which notification); the wire only carries it.
 * - Sizes are enforced from the length prefix, before a body is buffered: an oversize request is
 *   refused by id (ERR_RPC_REQUEST_TOO_LARGE) and its body discarded as it streams past, so the
 *   connection stays usable; an oversize reply is replaced by ERR_RPC_REPLY_TOO_LARGE at the
 *   server, and refused (connection closed) at a client that gets one anyway.
 * - Backpressure: a server connection runs at most max_in_flight_requests handlers at once and
 *   stops reading its socket while at that limit or while its replies wait to drain.
 * - Batching: the frames one connection writes in one tick go out in one writev (frame-writer.ts).
 * - Zero copy: Buffer[] bodies go out by cork/writev without concatenation; a received frame
 *   inside one socket chunk is a view of the chunk, one spanning chunks is assembled once into a
 *   Buffer of exactly its size. Buffers handed to the wire must not change until written.
 */
export type { WireBody } from './frame-writer.js';
export { DEFAULT_MAX_IN_FLIGHT_REQUESTS, WireServer, WireServerConnection, type WireRequest, type WireServerOptions } from './wire-server.js';
export { WireClient, type WireClientOptions } from './wire-client.js';
export { RemoteError, isRemoteError } from './errors.js';
export { FRAME_PUSH, FRAME_REPLY_ERROR, FRAME_REPLY_OK, FRAME_REQUEST, MAX_KIND } from './frame.js';
