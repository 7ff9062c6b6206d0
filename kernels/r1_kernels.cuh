/*
 * r1_kernels.cuh - launchers of the CUDA backend's own kernels
 * (kernels/r1_kernels.cu), callable from C (src/engine/backend_cuda.c).
 *
 * Every launcher takes a stream, launches asynchronously and returns the
 * launch status (cudaGetLastError()); a fault while running surfaces at the
 * next synchronising call, which the backend checks too.
 *
 * Number formats: the residual stream and every GEMM output are float32; the
 * inputs of GEMMs (normed activations, attention output, SwiGLU output) and
 * the KV cache are bf16 (as uint16_t bits on the C side); RMSNorm weights,
 * biases and the RoPE table are float32.
 */
#ifndef R1_KERNELS_CUH
#define R1_KERNELS_CUH

#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C"
{
#endif

/* head dimensions the attention kernel is instantiated for */
#define R1K_HEAD_DIM_OK(hd) ((hd) == 16 || (hd) == 32 || (hd) == 64 || (hd) == 128 || (hd) == 256)

/* x[t, :] = float(table[tokens[t], :]);  x [T, H] f32, table [vocab, H] bf16 */
cudaError_t r1k_embed(cudaStream_t s, float *x, const uint16_t *table, const int32_t *tokens,
					  int T, int H);

/*
 * out[r, :] = bf16(x[src, :] * rsqrt(mean(x[src, :]^2) + eps) * w), src = rows ? rows[r] : r;
 * out [n_rows, H] bf16, x [*, H] f32, w [H] f32
 */
cudaError_t r1k_rmsnorm(cudaStream_t s, uint16_t *out, const float *x, const int32_t *rows,
						const float *w, int n_rows, int H, float eps);

/* out[t, j] = bf16(silu(gu[t, j]) * gu[t, inter + j]);  gu [T, 2*inter] f32 (gate | up) */
cudaError_t r1k_swiglu(cudaStream_t s, uint16_t *out, const float *gu, int T, int inter);

/*
 * out[t, n] = sum_k x[t, k] w[n, k] + beta * out[t, n] with a reduction order
 * fixed per (t, n): bitwise the same for every T (the batch-invariant mode's
 * linear layer).  out [T, n_out] f32, x [T, n_in] bf16, w [n_out, n_in] bf16.
 */
cudaError_t r1k_gemm_fixed(cudaStream_t s, float *out, const uint16_t *x, const uint16_t *w, int T,
						   int n_out, int n_in, float beta);

/*
 * The quantised linear layer: out[t * ldo + n] = sum_k x[t, k] w[n, k] +
 * beta * out[...], w [n_out] rows of row_bytes in dtype (an r1_dtype: Q8_0,
 * Q4_0, Q5_0, Q4_K, Q5_K, Q6_K or BF16), decoded in registers (quant_blocks.h); a fixed
 * reduction order per output (batch-invariant).  n_in a multiple of 8.
 */
cudaError_t r1k_qgemm(cudaStream_t s, float *out, int ldo, const uint16_t *x, const void *w, int dtype,
					  size_t row_bytes, int T, int n_out, int n_in, float beta);

/*
 * Decode-sized linear layers (gemv.cu), T from 1 to 4 tokens, not
 * batch-invariant: r1k_gemv as cublasGemmEx's out = x W^T + beta out (bf16
 * W, n_in a multiple of 8); r1k_gemv_swiglu h[t, j] = bf16(silu(x . Wg[j]) *
 * (x . Wu[j])), w_gu [2 inter, n_in] gate rows then up rows; r1k_qgemv as
 * r1k_qgemm for Q4_K, Q6_K and Q8_0.  The _ok functions say whether a shape
 * (and type) is taken.
 */
int			r1k_gemv_ok(int T, int n_in);
cudaError_t r1k_gemv(cudaStream_t s, float *out, const uint16_t *x, const uint16_t *w, int T, int n_out,
					 int n_in, float beta);
cudaError_t r1k_gemv_swiglu(cudaStream_t s, uint16_t *h, const uint16_t *x, const uint16_t *w_gu, int T,
							int inter, int n_in);
int			r1k_qgemv_ok(int dtype, int T, int n_in);
cudaError_t r1k_qgemv(cudaStream_t s, float *out, int ldo, const uint16_t *x, const void *w, int dtype,
					  size_t row_bytes, int T, int n_out, int n_in, float beta);

/* x[t, :] = float(row tokens[t] of table), rows of row_bytes in dtype (as r1k_qgemm) */
cudaError_t r1k_embed_q(cudaStream_t s, float *x, const void *table, int dtype, size_t row_bytes,
						const int32_t *tokens, int T, int H);

/*
 * out[r] = the token r1_sample would choose from row r of logits (row stride
 * ld, the first sample_vocab entries), for n_rows rows; params: 8 int32 a
 * row (temperature, top_p, min_p as float bits, top_k, seed lo/hi, position
 * lo/hi).  cand_p/cand_id: n_rows * n2 scratch, n2 a power of two >=
 * sample_vocab.
 */
cudaError_t r1k_sample(cudaStream_t s, const float *logits, int ld, int n_rows, int sample_vocab,
					   const int32_t *params, float *cand_p, int32_t *cand_id, int n2, int32_t *out);

/* tables[upd[2i]] = upd[2i + 1] for i < n: new block-table entries */
cudaError_t r1k_table_update(cudaStream_t s, int32_t *tables, const int32_t *upd, int n);

/* where a batch's tokens are and where their keys and values go */
typedef struct r1k_kv_args
{
	uint16_t   *pool;			/* paged KV pool, bf16, layout of cuda_plan.h */
	const int32_t *tables;		/* [max_slots, mbps] block tables */
	const int32_t *tok_pos;		/* [T] absolute positions */
	const int32_t *tok_slot;	/* [T] slots */
	int			mbps;			/* max blocks per slot (a table row) */
	int			n_blocks;		/* blocks in the pool */
	int			layer;
	int			T;
	int			n_heads;
	int			n_kv_heads;
	int			head_dim;
} r1k_kv_args;

/*
 * qkv [T, (n_heads + 2 n_kv_heads) head_dim] f32 straight from the fused GEMM:
 * add bias, rotate q and k (NeoX half-split, cos/sin [max_ctx, head_dim/2]),
 * q to q_out [T, n_heads head_dim] f32, k and v into the pool (bf16).
 */
cudaError_t r1k_rope_append(cudaStream_t s, const r1k_kv_args *kv, float *q_out, const float *qkv,
							const float *bias, const float *rope_cos, const float *rope_sin);

/*
 * Causal GQA attention of every token of the batch over its slot's cache
 * (positions [0, pos]), split-K over partitions of part positions (cuda_plan.h),
 * then the log-sum-exp merge of the splits.  q [T, n_heads head_dim] f32;
 * out [T, n_heads head_dim] bf16; part_o [T, n_heads, max_splits, head_dim] and
 * part_ml [T, n_heads, max_splits, 2] f32 scratch.
 */
cudaError_t r1k_attention(cudaStream_t s, const r1k_kv_args *kv, uint16_t *out, const float *q,
						  float *part_o, float *part_ml, float scale, int part, int max_splits);

/*
 * Prompt attention through cuBLAS (prefill_attn.cu, backend_cuda.c):
 * r1k_kv_gather copies keys and values of slot positions [0, ctx) of
 * kv->layer into kc, vc [n_kv_heads][ctx][head_dim] bf16; r1k_q_pack turns q
 * [T, n_heads hd] f32 into qb [n_heads][T][hd] bf16; r1k_softmax_rows makes
 * P (bf16) from score rows S (f32), row r = head * tq + i over keys [0, len)
 * (ld a row), query i at position first_pos + i: causal, the tail zeroed.
 */
cudaError_t r1k_kv_gather(cudaStream_t s, const r1k_kv_args *kv, int slot, int ctx, uint16_t *kc,
						  uint16_t *vc);
cudaError_t r1k_q_pack(cudaStream_t s, const float *q, uint16_t *qb, int T, int n_heads, int hd);
cudaError_t r1k_softmax_rows(cudaStream_t s, const float *S, uint16_t *P, int n_rows, int tq, int len, int ld,
							 int first_pos);

/* dynamic shared memory the attention kernel needs (for the launch check) */
size_t		r1k_attention_smem(int group, int head_dim);

#ifdef __cplusplus
}
#endif

#endif							/* R1_KERNELS_CUH */
