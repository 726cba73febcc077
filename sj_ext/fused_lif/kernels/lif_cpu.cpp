// sj_ext fused LIF kernels for the CPU (g++ -O3 -fopenmp): the kernels of
// lif_kernels.cu with the same names, parameters and results, over the same
// per-element maths (lif_core.cuh), in loops shaped for a CPU.
//
// Why other loops than the GPU's: a GPU thread owns one chain and walks its T
// steps, and neighbouring threads read neighbouring elements. A CPU thread
// walking one chain's T steps reads T elements M apart; with M a power of two
// they fall in one cache set, and every chain evicts the lines the next one
// needs (measured: 2.5x slower than SpikingJelly's eager loop). Here a thread
// takes a tile of SJ_TILE neighbouring chains and walks the steps of the whole
// tile: the tile's membranes stay in arrays in L1, each step reads and writes
// contiguous runs, and the innermost loops run over the tile's chains, where
// the compiler can vectorise them.
//
// Blocks: the chains are split into blocks of SJ_CPU_BLOCK (the last one
// shorter), shared out over the OpenMP threads (static schedule, torch's
// thread count: sj_set_threads). Per-block partial sums (the moments of the
// statistics, grad_k) go to buffers of one entry per block, merged in block
// order: the results do not depend on the thread count.
//
// Launch protocol (sj_ext/fused_lif/ops.py): as on a GPU, sj_lif_step runs
// once per t = 0 .. T and sj_lif_loop / sj_lif_backward once. `counters` is
// the GPU's last-block flag and is not read here.

#include <math.h>
#include <string.h>

#include <cstddef>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

#include "lif_core.cuh"

#if !defined(SJ_CPU_BLOCK)
#error "define SJ_CPU_BLOCK (chains per block)"
#endif
#define SJ_TILE 256

static int sj_threads = 1;
extern "C" void sj_set_threads(int n) { sj_threads = n > 0 ? n : 1; }

static inline long long sj_blocks(long long L) { return (L + SJ_CPU_BLOCK - 1) / SJ_CPU_BLOCK; }

// One past the last chain of block b (which starts at b SJ_CPU_BLOCK).
static inline long long sj_block_end(long long b, long long L) {
  return (b + 1) * SJ_CPU_BLOCK < L ? (b + 1) * SJ_CPU_BLOCK : L;
}

// Element of group g of chain c in a step (c itself for independent neurons).
static inline long long sj_element(long long c, int g, const long long* __restrict__ layout) {
  return sj_chain_base(c, layout) + sj_group_offset(g, layout);
}

// Moments of the charged membranes of the chains [c0, c1) at step offset `at`:
// two passes in double (mean, then centred squares), as the reference takes them.
static sj_moments sj_block_moments(const sj_store* __restrict__ h, long long at, long long c0,
                                   long long c1, const long long* __restrict__ layout) {
  double sum = 0, m2 = 0;
#pragma omp simd reduction(+ : sum)
  for (long long c = c0; c < c1; ++c)
    for (int g = 0; g < SJ_G; ++g) sum += sj_load(h[at + sj_element(c, g, layout)]);
  sj_moments m;
  m.n = (double)(c1 - c0) * SJ_G;
  m.mean = sum / m.n;
#pragma omp simd reduction(+ : m2)
  for (long long c = c0; c < c1; ++c)
    for (int g = 0; g < SJ_G; ++g) {
      const double d = sj_load(h[at + sj_element(c, g, layout)]) - m.mean;
      m2 += d * d;
    }
  m.m2 = m2;
  return m;
}

// sg[j] = ds/dz at z[j] for the n chains of a row: one loop per shape, so
// that each is free of branches and the compiler can vectorise it.
static inline void sj_surrogate_row(const sj_acc* __restrict__ z, sj_acc* __restrict__ sg, int n,
                                    int shape, sj_acc alpha, sj_acc width) {
  if (shape == SJ_SG_RECT) {
    for (int j = 0; j < n; ++j) sg[j] = sj_surrogate_grad(z[j], SJ_SG_RECT, alpha, width);
  } else if (shape == SJ_SG_ATAN) {
    for (int j = 0; j < n; ++j) sg[j] = sj_surrogate_grad(z[j], SJ_SG_ATAN, alpha, width);
  } else {
    for (int j = 0; j < n; ++j) sg[j] = sj_surrogate_grad(z[j], SJ_SG_SIGMOID, alpha, width);
  }
}

// Forward, all steps, thresholds vth[t] given. h (T x M) may be null: not kept.
extern "C" __global__ void sj_lif_loop(
    const sj_store* __restrict__ x, const sj_store* __restrict__ v_init,
    const sj_acc* __restrict__ k, const long long* __restrict__ layout,
    const sj_acc* __restrict__ vth, sj_store* __restrict__ spike, sj_store* __restrict__ h,
    sj_store* __restrict__ v_out, int T, long long M, long long L, int decay_input, int hard,
    sj_acc v_reset, sj_acc theta) {
  const sj_acc kk = k[0];
  const sj_acc v_rest = hard ? v_reset : 0;
  const long long tiles = (L + SJ_TILE - 1) / SJ_TILE;
#pragma omp parallel for schedule(static) num_threads(sj_threads)
  for (long long tile = 0; tile < tiles; ++tile) {
    const long long c0 = tile * SJ_TILE;
    const int n = (int)(L - c0 < SJ_TILE ? L - c0 : SJ_TILE);
    sj_acc u[SJ_G][SJ_TILE], prev[SJ_TILE];
    for (int g = 0; g < SJ_G; ++g)
      for (int j = 0; j < n; ++j) u[g][j] = sj_load(v_init[sj_element(c0 + j, g, layout)]);
    for (int t = 0; t < T; ++t) {
      const sj_acc vt = vth[t];
      const long long at = (long long)t * M;
      for (int g = 0; g < SJ_G; ++g) {
        for (int j = 0; j < n; ++j) {
          const long long i = at + sj_element(c0 + j, g, layout);
          const sj_acc m = g == 0 ? u[0][j] : sj_project(prev[j], u[g][j], theta);
          const sj_acc hc = sj_charge(sj_load(x[i]), m, kk, v_rest, decay_input);
          if (h) h[i] = sj_pack(hc);
          const int s = sj_fire(hc, vt);
          spike[i] = sj_pack((sj_acc)s);
          u[g][j] = sj_reset(hc, s, vt, v_reset, hard);
          prev[j] = hc;
        }
      }
    }
    for (int g = 0; g < SJ_G; ++g)
      for (int j = 0; j < n; ++j) v_out[sj_element(c0 + j, g, layout)] = sj_pack(u[g][j]);
  }
}

// Forward, launch t of t = 0 .. T (as lif_kernels.cu's): fire step t - 1 from
// h_{t-1} and vth[t-1], then, for t < T, charge step t, keep h_t and take its
// moments (per block, merged in block order) to mu_t / sigma_t, and
// vth[t] = f_c (mu_t + sigma_t) when adaptive. Launch T writes the last
// spikes and v_out. partials: 3 doubles per block.
extern "C" __global__ void sj_lif_step(
    const sj_store* __restrict__ x, const sj_store* __restrict__ v_init,
    const sj_acc* __restrict__ k, const long long* __restrict__ layout, sj_acc* __restrict__ vth,
    sj_acc* __restrict__ sigma, sj_store* __restrict__ spike, sj_store* __restrict__ h,
    sj_store* __restrict__ v_out, double* __restrict__ partials,
    unsigned int* __restrict__ counters, int t, int T, int h_keep, long long M, long long L,
    int decay_input, int hard, sj_acc v_reset, sj_acc theta, int adaptive, sj_acc f_c) {
  const sj_acc kk = k[0];
  const sj_acc v_rest = hard ? v_reset : 0;
  const sj_acc vt_prev = t > 0 ? vth[t - 1] : 0;
  const long long h_prev = h_keep ? (long long)(t - 1) * M : 0;
  const long long h_now = h_keep ? (long long)t * M : 0;
  const long long blocks = sj_blocks(L);
#pragma omp parallel for schedule(static) num_threads(sj_threads)
  for (long long b = 0; b < blocks; ++b) {
    const long long c1 = sj_block_end(b, L);
    for (long long c0 = b * SJ_CPU_BLOCK; c0 < c1; c0 += SJ_TILE) {
      const int n = (int)(c1 - c0 < SJ_TILE ? c1 - c0 : SJ_TILE);
      sj_acc u[SJ_G][SJ_TILE], prev[SJ_TILE];
      for (int g = 0; g < SJ_G; ++g) {
        for (int j = 0; j < n; ++j) {
          const long long e = sj_element(c0 + j, g, layout);
          if (t == 0) {
            u[g][j] = sj_load(v_init[e]);
          } else {
            const sj_acc hp = sj_load(h[h_prev + e]);
            const int s = sj_fire(hp, vt_prev);
            spike[(long long)(t - 1) * M + e] = sj_pack((sj_acc)s);
            u[g][j] = sj_reset(hp, s, vt_prev, v_reset, hard);
          }
        }
      }
      for (int g = 0; g < SJ_G; ++g) {
        for (int j = 0; j < n; ++j) {
          const long long e = sj_element(c0 + j, g, layout);
          if (t == T) {
            v_out[e] = sj_pack(u[g][j]);
            continue;
          }
          const sj_acc m = g == 0 ? u[0][j] : sj_project(prev[j], u[g][j], theta);
          const sj_acc hc = sj_charge(sj_load(x[(long long)t * M + e]), m, kk, v_rest, decay_input);
          h[h_now + e] = sj_pack(hc);
          prev[j] = hc;
        }
      }
    }
    if (t < T) {
      const sj_moments m = sj_block_moments(h, h_now, b * SJ_CPU_BLOCK, c1, layout);
      partials[3 * b] = m.n;
      partials[3 * b + 1] = m.mean;
      partials[3 * b + 2] = m.m2;
    }
  }
  if (t == T) return;
  sj_moments all = {0, 0, 0};
  for (long long b = 0; b < blocks; ++b) {
    const sj_moments q = {partials[3 * b], partials[3 * b + 1], partials[3 * b + 2]};
    all = sj_moments_merge(all, q);
  }
  sj_acc mu, sg, v;
  sj_finalize(all, f_c, &mu, &sg, &v);
  sigma[t] = sg;
  if (adaptive) vth[t] = v;
  (void)counters;
}

// Backward of all steps (the adjoint of sj_lif_loop / sj_lif_step, as
// lif_kernels.cu's sj_lif_backward): per tile of chains, from t = T - 1 down
// to 0 and g = G - 1 down to 0,
//   gh = gu[g] du/dh + grad_spike sg + carry        (carry = gm^{g+1} dOmega/dr)
//   grad_x = gh k (decay_input) or gh;  gm = gh (1 - k)
//   gu[g] = gm dOmega/do (g > 0) or gm (g = 0): the gradient of u_{t-1}
//   grad_k += gh dh/dk  (a double sum per block: grad_k[b])
extern "C" __global__ void sj_lif_backward(
    const sj_store* __restrict__ h, const sj_store* __restrict__ x,
    const sj_store* __restrict__ v_init, const sj_acc* __restrict__ k,
    const long long* __restrict__ layout, const sj_acc* __restrict__ vth,
    const sj_acc* __restrict__ sigma, const sj_store* __restrict__ grad_spike,
    const sj_store* __restrict__ grad_v, sj_store* __restrict__ grad_x,
    sj_store* __restrict__ grad_v_init, double* __restrict__ grad_k, int T, long long M,
    long long L, int decay_input, int hard, int detach_reset, sj_acc v_reset, sj_acc theta,
    int sg_shape, int sg_dynamic, sj_acc sg_alpha, sj_acc sg_a0, sj_acc sg_v0) {
  const sj_acc kk = k[0];
  const sj_acc v_rest = hard ? v_reset : 0;
  const int need_u_prev = grad_k != 0 || SJ_G > 1;
  const long long blocks = sj_blocks(L);
#pragma omp parallel for schedule(static) num_threads(sj_threads)
  for (long long b = 0; b < blocks; ++b) {
    const long long c1 = sj_block_end(b, L);
    double dk = 0;
    for (long long c0 = b * SJ_CPU_BLOCK; c0 < c1; c0 += SJ_TILE) {
      const int n = (int)(c1 - c0 < SJ_TILE ? c1 - c0 : SJ_TILE);
      sj_acc gu[SJ_G][SJ_TILE], u_prev[SJ_G][SJ_TILE], carry[SJ_TILE];
      for (int g = 0; g < SJ_G; ++g)
        for (int j = 0; j < n; ++j)
          gu[g][j] = grad_v ? sj_load(grad_v[sj_element(c0 + j, g, layout)]) : 0;
      for (int t = T - 1; t >= 0; --t) {
        const sj_acc vt = vth[t];
        const sj_acc width = sj_width(sigma ? sigma[t] : 0, sg_dynamic, sg_a0, sg_v0);
        const long long at = (long long)t * M;
        if (need_u_prev) {
          for (int g = 0; g < SJ_G; ++g) {
            for (int j = 0; j < n; ++j) {
              const long long e = sj_element(c0 + j, g, layout);
              if (t == 0) {
                u_prev[g][j] = sj_load(v_init[e]);
              } else {
                const sj_acc hp = sj_load(h[at - M + e]);
                u_prev[g][j] = sj_reset(hp, sj_fire(hp, vth[t - 1]), vth[t - 1], v_reset, hard);
              }
            }
          }
        }
        for (int j = 0; j < n; ++j) carry[j] = 0;
        for (int g = SJ_G - 1; g >= 0; --g) {
#define SJ_AT(j) (at + sj_element(c0 + (j), g, layout))
          sj_acc hc[SJ_TILE], z[SJ_TILE], sg[SJ_TILE], gh[SJ_TILE];
          for (int j = 0; j < n; ++j) {
            hc[j] = sj_load(h[SJ_AT(j)]);
            z[j] = sj_round(hc[j] - vt);
          }
          sj_surrogate_row(z, sg, n, sg_shape, sg_alpha, width);
          for (int j = 0; j < n; ++j)
            gh[j] = gu[g][j] * sj_reset_grad(hc[j], z[j], sg[j], vt, v_reset, hard, detach_reset) +
                    carry[j];
          if (grad_spike)
            for (int j = 0; j < n; ++j) gh[j] += sj_load(grad_spike[SJ_AT(j)]) * sg[j];
          for (int j = 0; j < n; ++j) grad_x[SJ_AT(j)] = sj_pack(decay_input ? gh[j] * kk : gh[j]);
          sj_acc m[SJ_TILE];  // the membrane the step charged from (for dh/dk)
          if (g > 0) {
            for (int j = 0; j < n; ++j) {
              const sj_acc r = sj_load(h[at + sj_element(c0 + j, g - 1, layout)]);
              const sj_acc gm = gh[j] * (1 - kk);
              sj_acc d_rec, d_own;
              sj_project_grad(r, u_prev[g][j], theta, &d_rec, &d_own);
              carry[j] = gm * d_rec;
              gu[g][j] = gm * d_own;
              m[j] = sj_project(r, u_prev[g][j], theta);
            }
          } else {
            for (int j = 0; j < n; ++j) {
              gu[0][j] = gh[j] * (1 - kk);
              m[j] = u_prev[0][j];
            }
          }
          if (grad_k) {
#pragma omp simd reduction(+ : dk)
            for (int j = 0; j < n; ++j)
              dk += gh[j] * sj_charge_dk(x ? sj_load(x[SJ_AT(j)]) : 0, m[j], v_rest, decay_input);
          }
#undef SJ_AT
        }
      }
      for (int g = 0; g < SJ_G; ++g)
        for (int j = 0; j < n; ++j) grad_v_init[sj_element(c0 + j, g, layout)] = sj_pack(gu[g][j]);
    }
    if (grad_k) grad_k[b] = dk;
  }
}

namespace sj_shim {
template <class... A, size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<A*>(args[I])...);
}

// kernel(args), once: the kernels spread their own work over the OpenMP threads
template <class... A>
void launch(void (*kernel)(A...), unsigned, unsigned, void** args) {
  call(kernel, args, std::index_sequence_for<A...>{});
}
}  // namespace sj_shim
