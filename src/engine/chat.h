/*
 * chat.h - the distilled models' prompt template and the shape of their output:
 * a think trace closed by </think>, then an answer that often has \boxed{...}.
 */
#ifndef R1_CHAT_H
#define R1_CHAT_H

#include <stddef.h>

#include "util.h"

#define R1_BOS_TOKEN "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define R1_EOS_TOKEN "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define R1_USER_TOKEN "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define R1_ASSISTANT_TOKEN "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define R1_THINK_OPEN "<think>"
#define R1_THINK_CLOSE "</think>"

/* <｜begin▁of▁sentence｜>{system}<｜User｜>{prompt}<｜Assistant｜><think>\n (malloc'd) */
char	   *r1_chat_prompt(const char *system, const char *prompt, r1_error *err);

/*
 * Split generated text at the first </think>: think is the text before it
 * (a leading "<think>" and surrounding newlines trimmed), answer the text after
 * it (trimmed).  Without </think>, think is the whole text and answer NULL.
 * Both malloc'd.
 */
int			r1_split_think(const char *text, char **think, char **answer, r1_error *err);

/*
 * Content of the last \boxed{...} whose braces close (nested braces
 * balanced; a backslash escapes the next character, so \{ \} are content and
 * \\ is a backslash), malloc'd, or NULL.  Linear in the text.
 */
char	   *r1_extract_boxed(const char *text);

/* The same on text[0..len); check_interrupts (or NULL) is called every 4 MB. */
char	   *r1_extract_boxed_len(const char *text, size_t len, void (*check_interrupts) (void));

/* 1 if s[0..len) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int			r1_utf8_valid(const char *s, size_t len);

#endif							/* R1_CHAT_H */
