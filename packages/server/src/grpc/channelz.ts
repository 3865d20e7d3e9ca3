/**
 * Channelz keeps per-call counters and traces for a debugging service no member serves: on a unary
 * call it was a few percent of a member's CPU. Off on every server and channel a member opens.
 */
export const NO_CHANNELZ = { 'grpc.enable_channelz': 0 } as const;
