// sj_ext fused LIF kernels: the whole time loop of a layer of LIF neurons
// (AdaptiveThresholdLIF; DilatedWindowLIF's groups) forward and backward.
//
// Layout. One step of the layer holds M elements (the contiguous [N, *]);
// step t of a sequence starts at t * M. The elements form L = M / SJ_G
// *chains*: chain c holds one element of every group, at offsets
// sj_chain_base(c) + goff[g], g = 0 .. SJ_G - 1 (the groups of
// grouping.group_views, in order). A thread owns whole chains, so the
// in-step recurrence between groups (group g charged from the charged
// membrane of group g - 1) stays in registers. With SJ_G == 1 a chain is one
// element and the layout table is not read.
//
// Kernels (one thread per chain, grid-stride loops, blockDim.x a power of two
// <= SJ_MAX_BLOCK):
//   sj_lif_loop      forward of all T steps in one launch, when the thresholds
//                    are known up front and no statistics are taken;
//   sj_lif_step      forward of one step, launched for t = 0 .. T, when the
//                    layer-wide mean / std of h_t are needed (DS-ATGO's adaptive
//                    threshold, a dynamic surrogate's width);
//   sj_lif_backward  the adjoint recurrence of all T steps in one launch.
//
// Why per-step launches for the statistics, not one cooperative kernel with a
// grid-wide barrier per step: a cooperative launch must fit every block on the
// device at once (its grid is bounded by occupancy, it fails under MPS / MIG
// limits or beside other kernels), while the per-step launches run on any grid
// and any device. They cost T + 1 launches of a few microseconds each, and the
// state between steps costs nothing extra: step t reads h_{t-1} (saved for the
// backward anyway), fires it with the threshold the previous launch reduced,
// charges h_t and reduces its moments. The reduction ends in the last block
// to finish (a counter per step, no second launch) and merges the per-block
// partials in block order, so the statistics are deterministic. The choice is
// to be re-measured against a cooperative kernel on a GPU
// (benchmarks/bench_kernels.py).

#include "lif_core.cuh"

#define SJ_MAX_BLOCK 256

// Merge the moments of every thread of the block (tree order); every thread gets the result.
__device__ sj_moments sj_block_moments(sj_moments m) {
  __shared__ double sn[SJ_MAX_BLOCK], smean[SJ_MAX_BLOCK], sm2[SJ_MAX_BLOCK];
  const unsigned i = threadIdx.x;
  sn[i] = m.n;
  smean[i] = m.mean;
  sm2[i] = m.m2;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (i < s) {
      sj_moments a = {sn[i], smean[i], sm2[i]};
      sj_moments b = {sn[i + s], smean[i + s], sm2[i + s]};
      a = sj_moments_merge(a, b);
      sn[i] = a.n;
      smean[i] = a.mean;
      sm2[i] = a.m2;
    }
    __syncthreads();
  }
  sj_moments r = {sn[0], smean[0], sm2[0]};
  __syncthreads();  // slot 0 read by all before the buffer is reused
  return r;
}

// Sum over the threads of the block (tree order); every thread gets the result.
__device__ double sj_block_sum(double v) {
  __shared__ double buf[SJ_MAX_BLOCK];
  const unsigned i = threadIdx.x;
  buf[i] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (i < s) buf[i] += buf[i + s];
    __syncthreads();
  }
  const double r = buf[0];
  __syncthreads();
  return r;
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
  for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < L;
       c += (long long)gridDim.x * blockDim.x) {
    const long long base = sj_chain_base(c, layout);
    sj_acc u[SJ_G];  // membrane after the reset of the step before
#pragma unroll
    for (int g = 0; g < SJ_G; ++g) u[g] = sj_load(v_init[base + sj_group_offset(g, layout)]);
    for (int t = 0; t < T; ++t) {
      const sj_acc vt = vth[t];
      sj_acc prev = 0;  // charged membrane of the group before
#pragma unroll
      for (int g = 0; g < SJ_G; ++g) {
        const long long i = (long long)t * M + base + sj_group_offset(g, layout);
        const sj_acc m = g == 0 ? u[0] : sj_project(prev, u[g], theta);
        const sj_acc hc = sj_charge(sj_load(x[i]), m, kk, v_rest, decay_input);
        if (h) h[i] = sj_pack(hc);
        const int s = sj_fire(hc, vt);
        spike[i] = sj_pack((sj_acc)s);
        u[g] = sj_reset(hc, s, vt, v_reset, hard);
        prev = hc;
      }
    }
#pragma unroll
    for (int g = 0; g < SJ_G; ++g) v_out[base + sj_group_offset(g, layout)] = sj_pack(u[g]);
  }
}

// Forward, launch t of t = 0 .. T: fire step t - 1 (from h_{t-1} and vth[t-1]),
// then, for t < T, charge step t, keep h_t and reduce its moments to
// mu_t / sigma_t (and vth[t] = f_c (mu_t + sigma_t) when adaptive; otherwise
// vth holds the thresholds). Launch T writes the last spikes and v_out.
// h holds every step (h_keep = 1: T x M, for the backward) or only the current
// one (h_keep = 0: M; each element is read, then rewritten, by its own thread);
// partials: 3 doubles per block; counters: T zeros.
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
  int n = 0;
  sj_acc mean = 0, m2 = 0;
  for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < L;
       c += (long long)gridDim.x * blockDim.x) {
    const long long base = sj_chain_base(c, layout);
    sj_acc u[SJ_G];
#pragma unroll
    for (int g = 0; g < SJ_G; ++g) {
      const long long e = base + sj_group_offset(g, layout);
      if (t == 0) {
        u[g] = sj_load(v_init[e]);
      } else {
        const sj_acc hp = sj_load(h[h_prev + e]);
        const int s = sj_fire(hp, vt_prev);
        spike[(long long)(t - 1) * M + e] = sj_pack((sj_acc)s);
        u[g] = sj_reset(hp, s, vt_prev, v_reset, hard);
      }
    }
    if (t == T) {
#pragma unroll
      for (int g = 0; g < SJ_G; ++g) v_out[base + sj_group_offset(g, layout)] = sj_pack(u[g]);
      continue;
    }
    sj_acc prev = 0;
#pragma unroll
    for (int g = 0; g < SJ_G; ++g) {
      const long long e = base + sj_group_offset(g, layout);
      const sj_acc m = g == 0 ? u[0] : sj_project(prev, u[g], theta);
      const sj_acc hc = sj_charge(sj_load(x[(long long)t * M + e]), m, kk, v_rest, decay_input);
      h[h_now + e] = sj_pack(hc);
      sj_moments_push(&n, &mean, &m2, hc);
      prev = hc;
    }
  }
  if (t == T) return;

  sj_moments mine = {(double)n, (double)mean, (double)m2};
  const sj_moments block = sj_block_moments(mine);
  __shared__ int last;
  if (threadIdx.x == 0) {
    partials[3 * blockIdx.x] = block.n;
    partials[3 * blockIdx.x + 1] = block.mean;
    partials[3 * blockIdx.x + 2] = block.m2;
    __threadfence();  // the partials are visible before the count says so
    last = atomicAdd(&counters[t], 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  // the last block merges the partials: thread i those of blocks i, i + blockDim.x, ...
  const volatile double* p = partials;
  sj_moments all = {0, 0, 0};
  for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x) {
    sj_moments q = {p[3 * b], p[3 * b + 1], p[3 * b + 2]};
    all = sj_moments_merge(all, q);
  }
  all = sj_block_moments(all);
  if (threadIdx.x == 0) {
    sj_acc mu, sg, v;
    sj_finalize(all, f_c, &mu, &sg, &v);
    sigma[t] = sg;
    if (adaptive) vth[t] = v;
  }
}

// Backward of all steps (the adjoint of sj_lif_loop / sj_lif_step; spec:
// adaptive_lif._AdaptiveLIFMultiStep.backward, and autograd through the
// projection for groups). Per chain, from t = T - 1 down to 0 and g = G - 1 down to 0:
//   gh = gu[g] du/dh + grad_spike sg + carry        (carry = gm^{g+1} dOmega/dr)
//   grad_x = gh k (decay_input) or gh;  gm = gh (1 - k)
//   gu[g] = gm dOmega/do (g > 0) or gm (g = 0): the gradient of u_{t-1}
//   grad_k += gh dh/dk
// Nullable: x and v_init (only read for a learnable tau or groups), sigma
// (static surrogate), grad_spike, grad_v, grad_k (per-block sums; null: no grad).
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
  sj_acc dk = 0;
  for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < L;
       c += (long long)gridDim.x * blockDim.x) {
    const long long base = sj_chain_base(c, layout);
    sj_acc gu[SJ_G];  // gradient of the membrane after the reset of step t
#pragma unroll
    for (int g = 0; g < SJ_G; ++g)
      gu[g] = grad_v ? sj_load(grad_v[base + sj_group_offset(g, layout)]) : 0;
    for (int t = T - 1; t >= 0; --t) {
      const sj_acc vt = vth[t];
      const sj_acc width = sj_width(sigma ? sigma[t] : 0, sg_dynamic, sg_a0, sg_v0);
      sj_acc u_prev[SJ_G];  // u_{t-1}: the projection's own input, and dh/dk
      if (need_u_prev) {
#pragma unroll
        for (int g = 0; g < SJ_G; ++g) {
          const long long e = base + sj_group_offset(g, layout);
          if (t == 0) {
            u_prev[g] = sj_load(v_init[e]);
          } else {
            const sj_acc hp = sj_load(h[(long long)(t - 1) * M + e]);
            u_prev[g] = sj_reset(hp, sj_fire(hp, vth[t - 1]), vth[t - 1], v_reset, hard);
          }
        }
      }
      sj_acc carry = 0;
#pragma unroll
      for (int g = SJ_G - 1; g >= 0; --g) {
        const long long i = (long long)t * M + base + sj_group_offset(g, layout);
        const sj_acc hc = sj_load(h[i]);
        const sj_acc z = sj_round(hc - vt);
        const sj_acc sg = sj_surrogate_grad(z, sg_shape, sg_alpha, width);
        sj_acc gh = gu[g] * sj_reset_grad(hc, z, sg, vt, v_reset, hard, detach_reset) + carry;
        if (grad_spike) gh += sj_load(grad_spike[i]) * sg;
        grad_x[i] = sj_pack(decay_input ? gh * kk : gh);
        const sj_acc gm = gh * (1 - kk);
        sj_acc m = 0;
        if (g > 0) {
          const sj_acc r = sj_load(h[(long long)t * M + base + sj_group_offset(g - 1, layout)]);
          sj_acc d_rec, d_own;
          sj_project_grad(r, u_prev[g], theta, &d_rec, &d_own);
          carry = gm * d_rec;
          gu[g] = gm * d_own;
          if (grad_k) m = sj_project(r, u_prev[g], theta);
        } else {
          gu[0] = gm;
          if (grad_k) m = u_prev[0];
        }
        if (grad_k) dk += gh * sj_charge_dk(x ? sj_load(x[i]) : 0, m, v_rest, decay_input);
      }
    }
#pragma unroll
    for (int g = 0; g < SJ_G; ++g) grad_v_init[base + sj_group_offset(g, layout)] = sj_pack(gu[g]);
  }
  if (grad_k) {
    const double total = sj_block_sum((double)dk);
    if (threadIdx.x == 0) grad_k[blockIdx.x] = total;
  }
}
