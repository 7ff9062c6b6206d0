/*
 * sqlfuncs.h - argument checks shared by the SQL functions (sqlfuncs.c,
 * reason_many.c); each raises a 22023/54000 ERROR with a hint.
 */
#ifndef R1_SQLFUNCS_H
#define R1_SQLFUNCS_H

extern void r1_check_sampling(int max_tokens, double temperature, double top_p, int top_k,
							  double min_p);
extern void r1_check_max_think_tokens(int max_think_tokens);
extern void r1_check_prompt_size(size_t len);
extern void r1_check_seed(int64 seed);

#endif							/* R1_SQLFUNCS_H */
