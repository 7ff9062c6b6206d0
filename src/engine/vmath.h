/*
 * vmath.h - element-wise math the forward pass runs on every activation,
 * eight lanes at a time (AVX2, the build's baseline).
 *
 * exp is a Cephes-style polynomial (range reduction by ln 2 in two parts,
 * degree-6 polynomial, the exponent put in by integer add), within 2 ulp of
 * the true value on [-87, 88]; the vector lanes and the scalar tail run the
 * same operations in the same order (fma, correctly rounded), so an
 * element's result does not depend on where it falls, which keeps the
 * forward pass batch-invariant.
 */
#ifndef R1_VMATH_H
#define R1_VMATH_H

#include <stddef.h>

/* e^x, x clamped to [-87.3, 88.37] (a normal result) */
float		r1_expf(float x);

/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i] for i < n */
void		r1_silu_mul(float *g, const float *u, size_t n);

#endif							/* R1_VMATH_H */
