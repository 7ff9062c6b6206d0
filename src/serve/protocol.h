/*
 * protocol.h - what both ends of the engine host's socket share: the framing,
 * the limits, the SQLSTATEs the host sends, the finish reasons and the
 * engine options a message may name.  The host is `r1 serve` (server.c);
 * the client is the PostgreSQL extension (src/client.c, src/client_many.c).
 * Plain C, no PostgreSQL and no engine headers: both sides include it.
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
 *      -> {"ok":false, "code":"SQLSTATE", "error":S, "detail":S?, "hint":S?,
 *          "options":[S...]?}
 *
 *      "options" (optional): the engine options that "detail" and "hint" name,
 *      by name ("max_ctx"); the texts spell each as the host's side does
 *      (r1_proto_option_spelling: a `r1 serve` flag such as --max-ctx, or a
 *      request field such as queue_timeout_ms), so a client may put its own
 *      name for the option in their place (the extension: its setting,
 *      r1.max_ctx).
 *
 * Codes (R1_SQLSTATE_*): 22023 invalid parameter, 54000 prompt too long or
 * message too large, 53400 queue full (after waiting queue_timeout_ms for a
 * slot), 53300 too many connections, 53200 out of memory, 55000 no
 * tokenizer, 57014 the engine's own deadline passed or the request was
 * cancelled, 08P01 malformed message, XX000 engine error.
 * Responses are pure ASCII: every non-ASCII character is a \uXXXX escape
 * (PostgreSQL's JSON parser turns those into any server encoding).  Invalid
 * UTF-8 (a character cut off by max_tokens) and NUL become U+FFFD.
 *
 * Status fd (--status-fd N): the host writes one line per state change for
 * its supervisor: "loading", "ready {json}", "failed <reason>" or
 * "no_device <reason>" (--device cuda and no usable GPU).  After a failed
 * load it exits with status 0; a crash or a signal is the supervisor's cue to
 * restart it.
 */
#ifndef R1_PROTOCOL_H
#define R1_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- limits ---- */

#define R1_PROTO_HEADER_LEN		4	/* the big-endian length before each
									 * message */
#define R1_PROTO_MAX_MESSAGE	(128u << 20)	/* bytes of JSON in one
												 * request */
#define R1_PROTO_MAX_RESPONSE	(512u << 20)	/* bytes of JSON in one
												 * response */
#define R1_PROTO_MAX_PROMPT		(16u << 20) /* bytes of prompt + system text */
#define R1_PROTO_MAX_TAG		63	/* bytes of a request's "tag" */

/* ---- framing: a 4-byte big-endian length, then that many bytes ---- */

static inline void
r1_proto_put_len(unsigned char hdr[R1_PROTO_HEADER_LEN], size_t len)
{
	hdr[0] = (unsigned char) (len >> 24);
	hdr[1] = (unsigned char) (len >> 16);
	hdr[2] = (unsigned char) (len >> 8);
	hdr[3] = (unsigned char) len;
}

static inline size_t
r1_proto_get_len(const unsigned char hdr[R1_PROTO_HEADER_LEN])
{
	return ((size_t) hdr[0] << 24) | ((size_t) hdr[1] << 16) | ((size_t) hdr[2] << 8) | hdr[3];
}

/* ---- the SQLSTATEs of error responses ("code") ---- */

#define R1_SQLSTATE_INVALID_PARAMETER	"22023"
#define R1_SQLSTATE_TOO_LONG			"54000" /* program_limit_exceeded */
#define R1_SQLSTATE_QUEUE_FULL			"53400" /* configuration_limit_exceeded */
#define R1_SQLSTATE_TOO_MANY_CONNECTIONS "53300"
#define R1_SQLSTATE_OUT_OF_MEMORY		"53200"
#define R1_SQLSTATE_NOT_READY			"55000" /* object_not_in_prerequisite_state */
#define R1_SQLSTATE_CANCELED			"57014" /* query_canceled */
#define R1_SQLSTATE_PROTOCOL			"08P01" /* protocol_violation */
#define R1_SQLSTATE_INTERNAL			"XX000"

/* ---- finish reasons ("finish_reason") ---- */

typedef enum r1_finish
{
	R1_FINISH_STOP,				/* the end-of-sequence token */
	R1_FINISH_LENGTH,			/* max_tokens or the context ran out */
	R1_FINISH_THINK_BUDGET,		/* ended after max_think_tokens closed the
								 * trace */
	R1_FINISH_REPETITION,		/* loop detection stopped it */
	R1_FINISH_CANCELLED,		/* the client went away, or r1_engine_cancel */
	R1_FINISH_TIMEOUT,			/* the request's deadline passed */
	R1_FINISH_ERROR,			/* the engine failed it (the completion's
								 * error) */
	R1_FINISH_N
} r1_finish;

static inline const char *
r1_finish_name(r1_finish f)
{
	static const char *const names[R1_FINISH_N] = {
		"stop", "length", "think_budget", "repetition", "cancelled", "timeout", "error"
	};

	return (unsigned) f < R1_FINISH_N ? names[f] : "error";
}

/* "stop", "length", ... to the enum: 0, or -1 for another word */
static inline int
r1_finish_parse(const char *s, r1_finish *out)
{
	for (int f = 0; f < R1_FINISH_N; f++)
		if (s && strcmp(s, r1_finish_name((r1_finish) f)) == 0)
		{
			*out = (r1_finish) f;
			return 0;
		}
	return -1;
}

/* ---- engine options named in messages ("options") ---- */

/*
 * The i-th option the host may name (0, 1, ...; 0 past the last): its name
 * in "options" and how the host's texts spell it.
 */
static inline int
r1_proto_option(int i, const char **name, const char **spelling)
{
	static const char *const options[][2] = {
		{"max_ctx", "--max-ctx"},
		{"max_queued", "--max-queued"},
		{"kv_memory", "--kv-memory"},
		{"gpu_memory_fraction", "--gpu-memory-fraction"},
		{"queue_timeout", "queue_timeout_ms"},
	};

	if (i < 0 || i >= (int) (sizeof(options) / sizeof(options[0])))
		return 0;
	*name = options[i][0];
	*spelling = options[i][1];
	return 1;
}

/* how the host's texts spell option NAME; NULL for a name it does not know */
static inline const char *
r1_proto_option_spelling(const char *name)
{
	const char *n,
			   *s;

	for (int i = 0; r1_proto_option(i, &n, &s); i++)
		if (strcmp(n, name) == 0)
			return s;
	return NULL;
}

#endif							/* R1_PROTOCOL_H */
