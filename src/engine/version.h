/*
 * version.h - the build: the extension version of r1_pg.control and the git
 * commit it was built from, reported by `r1 --version` and r1_status().
 */
#ifndef R1_VERSION_H
#define R1_VERSION_H

/* "0.2.0 (git 0123abcd4567)", or "0.2.0" when built outside a git checkout */
const char *r1_version(void);

#endif							/* R1_VERSION_H */
