/*
 * server.h - the engine host: one process that keeps a model resident and
 * serves requests from many clients over a UNIX socket (`r1 serve`).  The
 * PostgreSQL extension's "r1 engine" worker starts it with fork+exec and
 * supervises it; backends connect to its socket directly.
 *
 * Protocol.  One request per connection.  A message is a 4-byte big-endian
 * length followed by that many bytes of UTF-8 JSON (an object).  The client
 * sends one request, the host answers with one response and closes.  A client
 * that closes its end before the answer cancels its request: the sequence
 * leaves the running batch at the next step and its KV cache is freed.
 *
 *   {"op":"generate", "prompt":S, "system":S|null, "raw":B, "max_tokens":N,
 *    "temperature":F, "top_p":F, "top_k":N, "min_p":F, "seed":N|null,
 *    "ignore_eos":B, "timeout_ms":N, "queue_timeout_ms":N,
 *    "max_think_tokens":N|null, "tag":S, "parse_special":B,
 *    "repetition_max_span":N, "repetition_min_repeats":N,
 *    "repetition_min_tokens":N, "share_prefill":B}
 *      -> {"ok":true, "think":S, "answer":S|null, "boxed":S|null,
 *          "finish_reason":S, "prompt_tokens":N, "completion_tokens":N,
 *          "think_tokens":N, "think_budget_hit":B, "repetition_span":N,
 *          "ms":F, "model":S, "weights_checksum":S|null}
 *      "tag" (at most 63 bytes, optional) names the request in "activity".
 *
 *   max_think_tokens (>= 1; null or absent = no limit): after that many
 *   generated tokens without </think> the engine emits </think> itself, as
 *   if sampled, and the model goes on to answer.  finish_reason is then
 *   "think_budget" when the answer ends at the end-of-sequence token, and
 *   "length" when max_tokens (or the context) cuts it off; think_budget_hit
 *   says in both cases that the budget closed the trace.  Otherwise
 *   finish_reason is "stop" or "length" as before.  think_tokens counts the
 *   forced </think> like a generated one.
 *
 *   Loop detection (src/engine/repetition.h): when the generated tokens end
 *   with a span of L tokens (L <= repetition_max_span) repeated at least
 *   repetition_min_repeats times back to back, covering at least
 *   repetition_min_tokens tokens, the request stops with finish_reason
 *   "repetition" and repetition_span = L (0 otherwise).  Absent fields take
 *   the defaults 512, 4 and 256; repetition_max_span 0 turns detection off,
 *   and so does ignore_eos (such a request runs to max_tokens).  Bounds:
 *   max_span <= 8192, min_repeats >= 2, min_tokens >= 1 (22023 otherwise).
 *
 *   share_prefill (optional, default false): requests with the same prompt
 *   ids that all ask for it compute the prompt once.  One of them prefills;
 *   the others wait in the batch (holding their slots) until its prompt is
 *   cached, copy its KV cache (all positions but the last) and feed only the
 *   last prompt token themselves.  Results do not change: with
 *   batch_invariant on the CPU they are bitwise those of unshared requests.
 *   r1_reason_vote() sends its n samples this way.
 *   {"op":"tokenize", "text":S, "count_only":B, "parse_special":B}
 *      -> {"ok":true, "ids":[N...]} or {"ok":true, "n":N}
 *
 *   parse_special (default false): whether added tokens written in the text
 *   (<｜User｜>, <｜Assistant｜>, </think>, <｜begin▁of▁sentence｜>, ...) become
 *   their token ids.  By default text is only text: "prompt", "system" and
 *   "text" are spelt with ordinary tokens, so they cannot fake a chat turn;
 *   the template's own control tokens are inserted by the host.  The
 *   extension sends true only when a superuser set r1.parse_special_tokens.
 *
 *   Parsing and tokenizing a request of more than 64 KiB runs beside the
 *   decode loop, not in it, and stops within milliseconds when the client
 *   closes its connection (between pre-tokens; one regex match over a
 *   single 16 MB word is not interrupted).
 *   {"op":"status"}
 *      -> {"ok":true, "model":S, "path":S, "device":S, "note":S, "ctx":N,
 *          "waiting":N, "running":N, "tokens_generated":N, "prompt_tokens":N,
 *          "requests_done":N, "memory_used":N, "weight_bytes":N, "clients":N,
 *          "weights_checksum":S|null, "repetitions":N, "prefill_shared":N}
 *      repetitions: requests stopped by loop detection; prefill_shared:
 *      prompt tokens copied from another request's KV cache (share_prefill)
 *      weights_checksum (16 hex digits, see checksum.h) is computed by a
 *      background thread after "ready": null until it is done.
 *   {"op":"activity"}
 *      -> {"ok":true, "requests":[{"tag":S, "state":"queued"|"running",
 *          "queue_position":N|null, "prompt_tokens":N, "completion_tokens":N,
 *          "tokens_per_s":F}...]}   every tagged request that waits or runs
 *   any failure
 *      -> {"ok":false, "code":"SQLSTATE", "error":S, "detail":S?, "hint":S?}
 *
 * Codes: 22023 invalid parameter, 54000 prompt too long or message too large,
 * 53400 queue full (after waiting queue_timeout_ms for a slot), 57014 the
 * engine's own deadline passed, 08P01 malformed message, XX000 engine error.
 * Responses are pure ASCII: every non-ASCII character is a \uXXXX escape
 * (PostgreSQL's JSON parser turns those into any server encoding).  Invalid
 * UTF-8 (a character cut off by max_tokens) and NUL become U+FFFD.
 *
 * Status fd (--status-fd N): the host writes one line per state change for
 * its supervisor: "loading", "ready {json}", "failed <reason>" or
 * "no_device <reason>" (r1.device=cuda and no usable GPU).  After a failed
 * load it exits with status 0; a crash or a signal is the supervisor's cue to
 * restart it.
 */
#ifndef R1_SERVER_H
#define R1_SERVER_H

#include <stdint.h>

#define R1_PROTO_MAX_MESSAGE	(128u << 20)	/* bytes of JSON in one request */
#define R1_PROTO_MAX_RESPONSE	(512u << 20)	/* bytes of JSON in one response */
#define R1_PROTO_MAX_PROMPT		(16u << 20)		/* bytes of prompt + system text */

/* `r1 serve ARGS...`: argv[0] is "serve".  Returns the process exit status. */
int			r1_serve_main(int argc, char **argv);

#endif							/* R1_SERVER_H */
