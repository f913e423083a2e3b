// Shared pieces of metaopt's CPU kernels: 16-lane float vectors (GCC vector extensions; one
// AVX-512 register, two AVX2 ones elsewhere), the transcendental functions the per-parameter
// networks need, and a work-sharing loop over XLA's intra-op thread pool.
//
// The functions match XLA:CPU's to float32 rounding (tests compare every kernel with the
// pure-JAX network): tanh is the same clamped rational approximation XLA uses, exp and log
// are Cephes' (~1 ulp). NaN propagates as in XLA (a diverged run must not turn finite).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "xla/ffi/api/ffi.h"

namespace metaopt {

namespace ffi = xla::ffi;

constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));

inline vf splat(float a) { return vf{} + a; }
// x limited to [lo, hi]; NaN stays NaN (comparisons with NaN are false).
inline vf clamp(vf x, float lo, float hi) {
  x = x < lo ? splat(lo) : x;
  return x > hi ? splat(hi) : x;
}
inline vf load(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf bits_to_float(vi v) { vf f; std::memcpy(&f, &v, sizeof f); return f; }
inline vi float_to_bits(vf v) { vi i; std::memcpy(&i, &v, sizeof i); return i; }
inline vf abs(vf x) { return bits_to_float(float_to_bits(x) & 0x7fffffff); }

// sign(x) in {-1, 0, 1} (NaN for NaN), as jnp.sign.
inline vf sign(vf x) {
  vf s = bits_to_float((x > 0) & float_to_bits(splat(1.f))) - bits_to_float((x < 0) & float_to_bits(splat(1.f)));
  return x == x ? s : x;
}

inline vf relu(vf x) { return x < 0 ? splat(0.f) : x; }

inline vf sqrt(vf v) { vf o; for (int j = 0; j < kLanes; ++j) o[j] = __builtin_sqrtf(v[j]); return o; }

// 1/q as AVX-512's 14-bit estimate refined by one Newton step (within 1 ulp); a division
// elsewhere.
inline vf recip(vf q) {
#ifdef __AVX512F__
  vf r = (vf)_mm512_rcp14_ps((__m512)q);
  return r * (2.0f - q * r);
#else
  return 1.0f / q;
#endif
}

inline vf rsqrt(vf v) { return recip(sqrt(v)); }

inline vf tanh(vf x) {
  const float limit = 7.90531110763549805f;
  x = clamp(x, -limit, limit);
  vf x2 = x * x;
  vf p = splat(-2.76076847742355e-16f);
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  vf q = splat(1.19825839466702e-06f);
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p * x * recip(q);
}

// The logistic function as XLA's pure-JAX path computes it: 0.5 tanh(a / 2) + 0.5, with the
// halving already folded into the weights that produce `half_a`.
inline vf logistic_of_half(vf half_a) { return 0.5f * tanh(half_a) + 0.5f; }

inline vf exp(vf x) {
  x = clamp(x, -87.3f, 88.7f);
  const float round = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  vf n = (x * 1.44269504088896341f + round) - round;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_to_float((__builtin_convertvector(n, vi) + 127) << 23);
}

// Natural log of positive x (normal numbers, +inf and NaN).
inline vf log(vf x) {
  vi bits = float_to_bits(x);
  vi e = ((bits >> 23) & 0xff) - 126;
  vf m = bits_to_float((bits & 0x007fffff) | 0x3f000000);  // mantissa in [0.5, 1)
  vi small = m < 0.70710678118654752440f;
  vf ef = __builtin_convertvector(e + small, vf);  // small is -1 where true
  m = m + bits_to_float(small & float_to_bits(m)) - 1.0f;
  vf z = m * m;
  vf p = splat(7.0376836292e-2f);
  p = p * m + -1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m + -1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m + -1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m + -2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  vf y = m * z * p;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * z;
  vf result = m + y + ef * 0.693359375f;
  return x < __builtin_inff() ? result : x;  // +inf and NaN pass through
}

// Elements per work item of parallel_for: a few per thread for a 30k-parameter network.
constexpr int64_t kChunk = 2048;

// Runs body(chunk) for chunk in [0, chunks) on the calling thread and on helpers from XLA's
// intra-op pool. Chunks are claimed from a shared counter, so a helper
// that starts late (its thread busy with other XLA work) only takes what is left, and the
// caller never waits for work nobody has claimed. The state lives on the heap because a
// helper may start after this call has returned.
template <typename Body>
void parallel_for(ffi::ThreadPool& pool, int64_t chunks, Body body) {
  struct State {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, chunks, &body]() {
    int64_t finished = 0;
    for (int64_t c; (c = state->next.fetch_add(1, std::memory_order_relaxed)) < chunks; ++finished) body(c);
    state->done.fetch_add(finished, std::memory_order_release);
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, chunks - 1);
  for (int64_t i = 0; i < helpers; ++i) {
    // A helper that starts after every chunk is claimed must not touch `body` (gone by
    // then): it only reads the counter.
    pool.Schedule([state, chunks, work]() {
      if (state->next.load(std::memory_order_relaxed) < chunks) work();
    });
  }
  work();
  while (state->done.load(std::memory_order_acquire) < chunks) _mm_pause();
}

}  // namespace metaopt
