// Optim4RL's step for every parameter at once: both GRUs (on g and g^2), their Dense(1)
// heads and the direction sign(g) exp(o1) / sqrt(exp(o2) + v_eps), in one pass that keeps
// each block of 16 parameters in registers (XLA writes the (3H, N) hidden product out and
// reads it back). Mirrors optim4rl.direction; weights packed by optim4rl._packed, v_eps an
// attribute of the call, the handler names and sizes from the build (kernels/__init__.py:
// METAOPT_OPTIM4RL_HANDLERS).
#include "vecmath.h"

namespace metaopt {
namespace {

// Per RNN: w_in[3H] b_in[3H] w_h[3H][H] b_hn[H] head[H] head_bias; rows r, z halved.
template <int H>
constexpr int64_t kRnnSize = 3 * H + 3 * H + 3 * H * H + H + H + 1;

template <int H>
inline vf gru_head(const float* w, vf x, const float* h_in, float* h_out, int64_t stride) {
  const float *w_in = w, *b_in = w + 3 * H, *w_h = w + 6 * H;
  const float *b_hn = w_h + 3 * H * H, *head = b_hn + H;
  vf h[H];
  for (int k = 0; k < H; ++k) h[k] = load(h_in + k * stride);
  vf out = splat(head[H]);
  for (int u = 0; u < H; ++u) {
    vf ar = w_in[u] * x + b_in[u], az = w_in[H + u] * x + b_in[H + u], an = splat(b_hn[u]);
    for (int k = 0; k < H; ++k) {
      ar += w_h[u * H + k] * h[k];
      az += w_h[(H + u) * H + k] * h[k];
      an += w_h[(2 * H + u) * H + k] * h[k];
    }
    vf r = logistic_of_half(ar);
    vf t_z = tanh(az);
    vf n = tanh(w_in[2 * H + u] * x + b_in[2 * H + u] + r * an);
    vf new_h = h[u] + (0.5f - 0.5f * t_z) * (n - h[u]);
    store(h_out + u * stride, new_h);
    out += head[u] * new_h;
  }
  return out;
}

template <int H>
ffi::Error Step(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> weights, ffi::Buffer<ffi::F32> carry,
                ffi::Buffer<ffi::F32> grad, float v_eps, ffi::ResultBuffer<ffi::F32> new_carry,
                ffi::ResultBuffer<ffi::F32> direction) {
  auto dims = grad.dimensions();
  const int64_t n = dims.back(), batch = n ? grad.element_count() / n : 0;
  if (n % kLanes) return ffi::Error::InvalidArgument("optim4rl kernel: the length must be a multiple of 16");
  if (weights.element_count() != batch * 2 * kRnnSize<H> || carry.element_count() != batch * 2 * H * n)
    return ffi::Error::InvalidArgument("optim4rl kernel: weights or carry do not match the gradient");
  const int64_t per_row = (n + kChunk - 1) / kChunk;
  parallel_for(pool, batch * per_row, [&](int64_t c) {
    const int64_t b = c / per_row, lo = (c % per_row) * kChunk, hi = std::min(n, lo + kChunk);
    const float* w = weights.typed_data() + b * 2 * kRnnSize<H>;
    const float* g = grad.typed_data() + b * n;
    const float* h_in = carry.typed_data() + b * 2 * H * n;
    float* h_out = new_carry->typed_data() + b * 2 * H * n;
    float* d = direction->typed_data() + b * n;
    for (int64_t i = lo; i < hi; i += kLanes) {
      vf x = load(g + i);
      vf o1 = gru_head<H>(w, x, h_in + i, h_out + i, n);
      vf o2 = gru_head<H>(w + kRnnSize<H>, x * x, h_in + H * n + i, h_out + H * n + i, n);
      store(d + i, sign(x) * exp(o1) * rsqrt(exp(o2) + v_eps));
    }
  });
  return ffi::Error::Success();
}

#define METAOPT_OPTIM4RL_BINDING          \
  xla::ffi::Ffi::Bind()                     \
      .Ctx<xla::ffi::ThreadPool>()          \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>() \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>() \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>() \
      .Attr<float>("v_eps")                 \
      .Ret<xla::ffi::Buffer<xla::ffi::F32>>() \
      .Ret<xla::ffi::Buffer<xla::ffi::F32>>()

}  // namespace
}  // namespace metaopt

// One handler per hidden size, named and sized by the build (kernels/__init__.py).
#ifndef METAOPT_OPTIM4RL_HANDLERS
#error "compile through metaopt.optimizers.kernels.build(): it defines METAOPT_OPTIM4RL_HANDLERS"
#endif
#define METAOPT_DEFINE_OPTIM4RL(name, H) \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, metaopt::Step<H>, METAOPT_OPTIM4RL_BINDING);
METAOPT_OPTIM4RL_HANDLERS(METAOPT_DEFINE_OPTIM4RL)
