/*
 * vote.c - reasoning-aware SQL: r1_answers_equal(a, b), the grading of a
 * final answer (src/engine/answer_equal.c does the work).
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "engine/answer_equal.h"
#include "client.h"
#include "r1_pg.h"

PG_FUNCTION_INFO_V1(pg_r1_answers_equal);

/*
 * r1_answers_equal(a text, b text) -> bool (STRICT).  Texts too long to be
 * answers are compared byte for byte without converting them.
 */
Datum
pg_r1_answers_equal(PG_FUNCTION_ARGS)
{
	text	   *a = PG_GETARG_TEXT_PP(0);
	text	   *b = PG_GETARG_TEXT_PP(1);
	size_t		al = VARSIZE_ANY_EXHDR(a),
				bl = VARSIZE_ANY_EXHDR(b);
	char	   *ua,
			   *ub;
	size_t		ual,
				ubl;

	if (al > 4 * (size_t) R1_ANSWER_MAX_LEN || bl > 4 * (size_t) R1_ANSWER_MAX_LEN)
		PG_RETURN_BOOL(al == bl && memcmp(VARDATA_ANY(a), VARDATA_ANY(b), al) == 0);
	ua = r1_text_to_utf8(a, &ual);
	ub = r1_text_to_utf8(b, &ubl);
	PG_RETURN_BOOL(r1_answers_equal(ua, ual, ub, ubl) != 0);
}
