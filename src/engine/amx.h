/*
 * amx.h - what the AMX GEMMs (qgemm_amx.c, bf16_amx.c) share: palette 1's
 * tile configuration, as _tile_loadconfig reads it (64-byte aligned, where
 * it is declared).  A thread loads one
 * before its first tile instruction and releases the tiles when done, so a
 * context switch saves their 8 kB only while a GEMM runs.
 */
#ifndef R1_AMX_H
#define R1_AMX_H

#include <stdint.h>
#include <string.h>

typedef struct r1_tilecfg
{
	uint8_t		palette;
	uint8_t		start_row;
	uint8_t		reserved[14];
	uint16_t	colsb[16];		/* bytes a row of each tile */
	uint8_t		rows[16];
} r1_tilecfg;

/* palette 1, every tile unused; set rows and colsb of the tiles used */
static inline void
r1_tilecfg_init(r1_tilecfg *c)
{
	memset(c, 0, sizeof(*c));
	c->palette = 1;
}

#endif							/* R1_AMX_H */
