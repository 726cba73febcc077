// sj_ext fused LIF kernels: the per-element maths, shared by the CUDA kernels
// (lif_kernels.cu, compiled by NVRTC through CuPy) and the CPU check harness
// (host_shim.h, compiled by g++). Every function here restates one equation of
// the torch reference (sj_ext/functional/adaptive_lif.py, grouping.py); the
// tests compare the two.
//
// Configuration (preprocessor, one compiled module per value):
//   SJ_DTYPE  storage type: 0 float32, 1 float64, 2 float16, 3 bfloat16
//   SJ_G      groups per chain (1: independent neurons)
//   SJ_PROJ   projection between consecutive groups: 0 none, 1 add, 2 sine
// Everything else (decay_input, reset, surrogate shape and parameters, tau,
// thresholds) is a kernel argument.
//
// Rounding: the storage type S may be narrower than the arithmetic type
// (float for float16 / bfloat16). The torch reference rounds to S after every
// tensor op, so the forward maths rounds (sj_round) after every op too and
// gives the reference's bits; sj_round is the identity for float32 / float64.

#if defined(__CUDACC__)
#define SJ_HD __host__ __device__ __forceinline__
#else
#define SJ_HD inline
#endif

#define SJ_DTYPE_FLOAT32 0
#define SJ_DTYPE_FLOAT64 1
#define SJ_DTYPE_FLOAT16 2
#define SJ_DTYPE_BFLOAT16 3

#define SJ_PROJ_NONE 0
#define SJ_PROJ_ADD 1
#define SJ_PROJ_SINE 2

#define SJ_SG_RECT 0
#define SJ_SG_ATAN 1
#define SJ_SG_SIGMOID 2

#if !defined(SJ_DTYPE) || !defined(SJ_G) || !defined(SJ_PROJ)
#error "define SJ_DTYPE, SJ_G and SJ_PROJ"
#endif
#if SJ_G < 1 || (SJ_PROJ == SJ_PROJ_NONE && SJ_G != 1)
#error "SJ_G must be >= 1, and 1 without a projection (independent groups are one group)"
#endif

// ------------------------------------------------------------------ storage
#if SJ_DTYPE == SJ_DTYPE_FLOAT64
typedef double sj_acc;
typedef double sj_store;
SJ_HD sj_acc sj_load(sj_store v) { return v; }
SJ_HD sj_store sj_pack(sj_acc v) { return v; }
#elif SJ_DTYPE == SJ_DTYPE_FLOAT32
typedef float sj_acc;
typedef float sj_store;
SJ_HD sj_acc sj_load(sj_store v) { return v; }
SJ_HD sj_store sj_pack(sj_acc v) { return v; }
#elif SJ_DTYPE == SJ_DTYPE_FLOAT16
#if !defined(__CUDACC__)
#error "float16 kernels are device-only (the CPU harness runs float32 / float64 / bfloat16)"
#endif
typedef float sj_acc;
typedef unsigned short sj_store;  // IEEE binary16 bits
__device__ __forceinline__ sj_acc sj_load(sj_store v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
  return f;
}
__device__ __forceinline__ sj_store sj_pack(sj_acc v) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  return h;
}
#elif SJ_DTYPE == SJ_DTYPE_BFLOAT16
typedef float sj_acc;
typedef unsigned short sj_store;  // bfloat16 bits: the high half of a float32
#if defined(__CUDACC__)
SJ_HD unsigned int sj_float_bits(float f) { return __float_as_uint(f); }
SJ_HD float sj_bits_float(unsigned int u) { return __uint_as_float(u); }
#else
SJ_HD unsigned int sj_float_bits(float f) {
  unsigned int u;
  memcpy(&u, &f, 4);
  return u;
}
SJ_HD float sj_bits_float(unsigned int u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
#endif
SJ_HD sj_acc sj_load(sj_store v) { return sj_bits_float(((unsigned int)v) << 16); }
SJ_HD sj_store sj_pack(sj_acc v) {  // round to nearest even; NaN stays a (quiet) NaN
  unsigned int u = sj_float_bits(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (sj_store)((u >> 16) | 0x40u);
  return (sj_store)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#else
#error "unknown SJ_DTYPE"
#endif

// x rounded to the storage type (what one torch op on S tensors returns)
SJ_HD sj_acc sj_round(sj_acc x) { return sj_load(sj_pack(x)); }

SJ_HD float sj_sin(float x) { return sinf(x); }
SJ_HD double sj_sin(double x) { return sin(x); }
SJ_HD float sj_cos(float x) { return cosf(x); }
SJ_HD double sj_cos(double x) { return cos(x); }
SJ_HD float sj_tanh(float x) { return tanhf(x); }
SJ_HD double sj_tanh(double x) { return tanh(x); }
SJ_HD float sj_exp(float x) { return expf(x); }
SJ_HD double sj_exp(double x) { return exp(x); }
SJ_HD float sj_abs(float x) { return fabsf(x); }
SJ_HD double sj_abs(double x) { return fabs(x); }

// ------------------------------------------------------------------- charge
// adaptive_lif.lif_charge from membrane m (u_{t-1}, or the projection for a
// grouped neuron) with input x and k = 1/tau:
//   decay_input:  h = m + (x - (m - v_rest)) k      else  h = m - (m - v_rest) k + x
SJ_HD sj_acc sj_charge(sj_acc x, sj_acc m, sj_acc k, sj_acc v_rest, int decay_input) {
  if (decay_input) return sj_round(m + sj_round(sj_round(x - sj_round(m - v_rest)) * k));
  return sj_round(sj_round(m - sj_round(sj_round(m - v_rest) * k)) + x);
}

// dh/dk of sj_charge (dh/dm = 1 - k; dh/dx = k with decay_input, else 1)
SJ_HD sj_acc sj_charge_dk(sj_acc x, sj_acc m, sj_acc v_rest, int decay_input) {
  return decay_input ? x - (m - v_rest) : v_rest - m;
}

// --------------------------------------------------------------- projection
// grouping.{sine,add,none}_projection: Omega(r, o), r the charged membrane of
// the group before, o this group's membrane from the step before.
//   sine: 2 sin(theta r cos(theta o))      add: r + o      none: o
SJ_HD sj_acc sj_project(sj_acc r, sj_acc o, sj_acc theta) {
#if SJ_PROJ == SJ_PROJ_SINE
  return sj_round(2 * sj_round(sj_sin(sj_round(sj_round(theta * r) *
                                               sj_round(sj_cos(sj_round(theta * o)))))));
#elif SJ_PROJ == SJ_PROJ_ADD
  return sj_round(r + o);
#else
  return o;
#endif
}

// dOmega/dr and dOmega/do at (r, o)
SJ_HD void sj_project_grad(sj_acc r, sj_acc o, sj_acc theta, sj_acc* d_rec, sj_acc* d_own) {
#if SJ_PROJ == SJ_PROJ_SINE
  const sj_acc c = sj_cos(theta * o);
  const sj_acc g = 2 * sj_cos(theta * r * c);  // 2 cos(theta r c)
  *d_rec = g * theta * c;
  *d_own = -g * theta * r * theta * sj_sin(theta * o);
#elif SJ_PROJ == SJ_PROJ_ADD
  *d_rec = 1;
  *d_own = 1;
#else
  *d_rec = 0;
  *d_own = 1;
#endif
}

// ------------------------------------------------------------ fire and reset
// Heaviside of z = h - V_th (Theta(0) = 1), z rounded as the reference's h - v_th
SJ_HD int sj_fire(sj_acc h, sj_acc vth) { return sj_round(h - vth) >= 0; }

// adaptive_lif.neuron_reset: hard  u = v_reset if s else h;  soft  u = h - V_th if s else h
SJ_HD sj_acc sj_reset(sj_acc h, int spike, sj_acc vth, sj_acc v_reset, int hard) {
  if (!spike) return h;
  return hard ? sj_round(v_reset) : sj_round(h - vth);
}

// du/dh through the reset, with sg = ds/dz (spec: _AdaptiveLIFMultiStep.backward):
//   soft: 1 - V_th sg (1 when detached)     hard: 1 - s + (v_reset - h) sg (no sg term detached)
SJ_HD sj_acc sj_reset_grad(sj_acc h, sj_acc z, sj_acc sg, sj_acc vth, sj_acc v_reset, int hard,
                           int detach) {
  if (!hard) return detach ? (sj_acc)1 : 1 - vth * sg;
  const sj_acc keep = z >= 0 ? 0 : 1;
  return detach ? keep : keep + (v_reset - h) * sg;
}

// ---------------------------------------------------------------- surrogates
// Width a_t of sj_ext.surrogate.DynamicSurrogateBase: a0 (1 + tanh(sigma_t - v0)),
// or the fixed a0 for a static surrogate.
SJ_HD sj_acc sj_width(sj_acc sigma, int dynamic, sj_acc a0, sj_acc v0) {
  return dynamic ? a0 * (1 + sj_tanh(sigma - v0)) : a0;
}

// ds/dz at z for width a and sharpness alpha (alpha_t = alpha / a):
//   rect:    1[|z| < a/2] / a                      (DynamicRect; SpikingJelly Rect: a = 1/alpha)
//   atan:    alpha_t / (2 (1 + (pi/2 alpha_t z)^2)) (DynamicATan; SpikingJelly ATan: a = 1)
//   sigmoid: alpha_t sigmoid(alpha_t z) (1 - sigmoid(alpha_t z))   (idem Sigmoid)
SJ_HD sj_acc sj_surrogate_grad(sj_acc z, int shape, sj_acc alpha, sj_acc width) {
  if (shape == SJ_SG_RECT) return sj_abs(z) < (sj_acc)0.5 * width ? 1 / width : 0;
  const sj_acc at = alpha / width;
  if (shape == SJ_SG_ATAN) {
    const sj_acc q = (sj_acc)1.5707963267948966 * at * z;
    return (sj_acc)0.5 * at / (1 + q * q);
  }
  const sj_acc s = 1 / (1 + sj_exp(-at * z));
  return at * s * (1 - s);
}

// ------------------------------------------------------------------- layout
// Offset in a step of element 0 of chain c: the layout table holds R, then
// the R sizes and R strides of the chain index space (row-major), then the
// SJ_G group offsets.
SJ_HD long long sj_chain_base(long long c, const long long* __restrict__ layout) {
#if SJ_G == 1
  return c;
#else
  const int rank = (int)layout[0];
  long long offset = 0;
  for (int d = rank - 1; d >= 0; --d) {
    const long long size = layout[1 + d];
    offset += (c % size) * layout[1 + rank + d];
    c /= size;
  }
  return offset;
#endif
}

SJ_HD long long sj_group_offset(int g, const long long* __restrict__ layout) {
#if SJ_G == 1
  return 0;
#else
  return layout[1 + 2 * layout[0] + g];
#endif
}

// ---------------------------------------------------------------- statistics
// Count, mean and centred sum of squares of a set; sets merge by Chan et al.'s
// pairwise rule, so the standard deviation comes out as accurate as the
// reference's two passes (mean, then centred squares) while h is read once.
struct sj_moments {
  double n, mean, m2;
};

SJ_HD sj_moments sj_moments_merge(sj_moments a, sj_moments b) {
  if (a.n == 0) return b;
  if (b.n == 0) return a;
  sj_moments r;
  r.n = a.n + b.n;
  const double d = b.mean - a.mean;
  r.mean = a.mean + d * (b.n / r.n);
  r.m2 = a.m2 + b.m2 + d * d * (a.n * (b.n / r.n));
  return r;
}

// Welford's update of one thread's running (n, mean, m2) in the arithmetic type
SJ_HD void sj_moments_push(int* n, sj_acc* mean, sj_acc* m2, sj_acc x) {
  *n += 1;
  const sj_acc d = x - *mean;
  *mean += d / (sj_acc)(*n);
  *m2 += d * (x - *mean);
}

// adaptive_lif.membrane_stats (layer-wide, unbiased): mu and sigma rounded to S,
// and the adaptive threshold f_c (mu + sigma)
SJ_HD void sj_finalize(sj_moments m, sj_acc f_c, sj_acc* mu, sj_acc* sigma, sj_acc* vth) {
  *mu = sj_round((sj_acc)m.mean);
  *sigma = sj_round((sj_acc)sqrt(m.m2 / (m.n - 1)));
  *vth = sj_round(f_c * sj_round(*mu + *sigma));
}
