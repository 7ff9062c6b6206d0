/*
 * version.c - the build's version string (see version.h).  The Makefile
 * passes R1_VERSION (from r1_pg.control) and R1_COMMIT (git, when there is
 * one) to this file alone and rebuilds it when either changes.
 */
#include "version.h"

#ifndef R1_VERSION
#define R1_VERSION "unknown"
#endif
#ifndef R1_COMMIT
#define R1_COMMIT ""
#endif

const char *
r1_version(void)
{
	return R1_COMMIT[0] ? R1_VERSION " (git " R1_COMMIT ")" : R1_VERSION;
}
