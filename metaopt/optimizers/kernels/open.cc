// OPEN's step for every parameter of one network at once, mirroring open.network_step:
//   pass 1: the six momenta (updated in place) and each leaf's mean square of features 0-14;
//   pass 2: the 19 input features, the GRU, the MLP with its two LayerNorms and the step
//           out0 * s exp(s out1) (+ s out2 noise), s = step_scale, each block of 16
//           parameters kept in registers throughout (XLA writes every layer's rows out and back).
// Weights packed by open._packed; the constants (betas, epsilons, step scale) come from
// open.py as attributes of the call, the handler names and sizes from the build
// (kernels/__init__.py: METAOPT_OPEN_HANDLERS). Partial sums are combined in chunk order, so
// results do not depend on how chunks were spread over threads.
#include <cmath>
#include <vector>

#include "vecmath.h"

namespace metaopt {
namespace {

// The published feature layout (open.compute_features): 0-14 from the parameter, the six
// momenta and the gradient, normalised per tensor; then the four below.
constexpr int kFeatures = 19, kNormalised = 15, kOutputs = 3, kMomenta = 6;
constexpr int kTrainingProgress = 15, kLayerProportion = 16, kEpochProgress = 17, kDormancy = 18;

// Features 0-14 before normalisation: p, sign(m) x6, log|m| x6, sign(g), log|g|.
inline void raw_features(const float* p, const float* mom, const float* g, int64_t n, int64_t i, float log_eps,
                         vf* x) {
  x[0] = load(p + i);
  for (int k = 0; k < kMomenta; ++k) {
    vf m = load(mom + k * n + i);
    x[1 + k] = sign(m);
    x[7 + k] = log(abs(m) + log_eps);
  }
  vf gi = load(g + i);
  x[13] = sign(gi);
  x[14] = log(abs(gi) + log_eps);
}

template <int H, int M>
struct Weights {
  // w_in (3H, 19), b_in (3H), w_h (3H, H), b_hn (H): GRU, r and z rows pre-halved.
  // Dense layers as (out, in), the LayerNorm centring folded in: w0 (M, H), b0, scale1,
  // bias1, w3 (M, M), b3, scale4, bias4 (M each), w6 (3, M), b6 (3).
  static constexpr int64_t kSize = 3 * H * kFeatures + 3 * H + 3 * H * H + H + M * H + 3 * M + M * M + 3 * M +
                                   kOutputs * M + kOutputs;
  const float *w_in, *b_in, *w_h, *b_hn, *w0, *b0, *s1, *c1, *w3, *b3, *s4, *c4, *w6, *b6;
  explicit Weights(const float* w) {
    const float** parts[] = {&w_in, &b_in, &w_h, &b_hn, &w0, &b0, &s1, &c1, &w3, &b3, &s4, &c4, &w6, &b6};
    const int64_t sizes[] = {3 * H * kFeatures, 3 * H, 3 * H * H, H, M * H, M, M, M, M * M, M, M, M, kOutputs * M, kOutputs};
    for (int i = 0; i < 14; ++i) { *parts[i] = w; w += sizes[i]; }
  }
};

// Dense(K -> M) then LayerNorm (centring already in the weights) then relu.
template <int K, int M>
inline void dense_norm_relu(const float* w, const float* b, const float* scale, const float* bias, float eps, const vf* in,
                            vf* out) {
  vf sum_sq = splat(0.f);
  for (int m = 0; m < M; ++m) {
    vf y = splat(b[m]);
    for (int k = 0; k < K; ++k) y += w[m * K + k] * in[k];
    out[m] = y;
    sum_sq += y * y;
  }
  vf inv = rsqrt(sum_sq * (1.0f / M) + eps);
  for (int m = 0; m < M; ++m) out[m] = relu(out[m] * inv * scale[m] + bias[m]);
}

template <int H, int M>
ffi::Error Step(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> weights, ffi::Buffer<ffi::F32> carry,
                ffi::Buffer<ffi::F32> old_momenta, ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> grad,
                ffi::Buffer<ffi::F32> layer_proportion, ffi::Buffer<ffi::F32> dormancy,
                ffi::Buffer<ffi::F32> noise, ffi::Buffer<ffi::F32> progress, ffi::Span<const int64_t> starts,
                int64_t size, ffi::Span<const float> betas, float log_eps, float norm_eps, float layer_norm_eps,
                float step_scale, ffi::ResultBuffer<ffi::F32> new_carry, ffi::ResultBuffer<ffi::F32> new_momenta,
                ffi::ResultBuffer<ffi::F32> step) {
  const int64_t n = grad.dimensions().back(), batch = n ? grad.element_count() / n : 0;
  const int64_t leaves = starts.size();
  if (n % kLanes) return ffi::Error::InvalidArgument("open kernel: the length must be a multiple of 16");
  if (betas.size() != kMomenta) return ffi::Error::InvalidArgument("open kernel: betas must hold 6 values");
  if (leaves == 0 || starts[0] != 0 || starts[leaves - 1] >= size || size > n)
    return ffi::Error::InvalidArgument("open kernel: leaf starts do not fit the size");
  if (weights.element_count() != batch * Weights<H, M>::kSize || carry.element_count() != batch * H * n ||
      old_momenta.element_count() != batch * kMomenta * n || progress.element_count() != batch * 2)
    return ffi::Error::InvalidArgument("open kernel: an input's size does not match the network");
  const bool noisy = noise.element_count() > 0;
  if (noisy && noise.element_count() != batch * n) return ffi::Error::InvalidArgument("open kernel: noise size");

  const int64_t per_row = (n + kChunk - 1) / kChunk;
  auto leaf_end = [&](int64_t l) { return l + 1 < leaves ? starts[l + 1] : size; };

  // Pass 1: momenta, and sums of squared raw features per (chunk, leaf, feature).
  std::vector<float> partial(batch * per_row * leaves * kNormalised, 0.f);
  parallel_for(pool, batch * per_row, [&](int64_t c) {
    const int64_t b = c / per_row, lo = (c % per_row) * kChunk, hi = std::min(n, lo + kChunk);
    const float* m_in = old_momenta.typed_data() + b * kMomenta * n;
    float* m_out = new_momenta->typed_data() + b * kMomenta * n;
    const float* p = params.typed_data() + b * n;
    const float* g = grad.typed_data() + b * n;
    float* sums = partial.data() + c * leaves * kNormalised;
    int64_t leaf = 0;
    vf acc[kNormalised] = {};
    auto flush = [&]() {
      for (int f = 0; f < kNormalised; ++f) {
        for (int j = 0; j < kLanes; ++j) sums[leaf * kNormalised + f] += acc[f][j];
        acc[f] = splat(0.f);
      }
    };
    for (int64_t i = lo; i < hi; i += kLanes) {
      vf gi = load(g + i);
      for (int k = 0; k < kMomenta; ++k)
        store(m_out + k * n + i, betas[k] * load(m_in + k * n + i) + (1.0f - betas[k]) * gi);
      if (i >= size) continue;  // padding: no statistics
      vf x[kNormalised];
      raw_features(p, m_out, g, n, i, log_eps, x);
      while (leaf + 1 < leaves && starts[leaf + 1] <= i) { flush(); ++leaf; }
      if (leaf_end(leaf) >= i + kLanes) {
        for (int f = 0; f < kNormalised; ++f) acc[f] += x[f] * x[f];
      } else {  // the block straddles leaves or the padding: lane by lane
        for (int j = 0, l = leaf; j < kLanes && i + j < size; ++j) {
          while (l + 1 < leaves && starts[l + 1] <= i + j) ++l;
          for (int f = 0; f < kNormalised; ++f) sums[l * kNormalised + f] += x[f][j] * x[f][j];
        }
      }
    }
    flush();
  });
  // Per-leaf factors 1 / sqrt(eps + mean square), chunks summed in order.
  std::vector<float> leaf_scale(batch * leaves * kNormalised);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t l = 0; l < leaves; ++l)
      for (int f = 0; f < kNormalised; ++f) {
        double total = 0;
        for (int64_t c = 0; c < per_row; ++c) total += partial[((b * per_row + c) * leaves + l) * kNormalised + f];
        const float mean = static_cast<float>(total / static_cast<double>(leaf_end(l) - starts[l]));
        leaf_scale[(b * leaves + l) * kNormalised + f] = 1.0f / std::sqrt(norm_eps + mean);
      }

  // Pass 2: features, network, step.
  parallel_for(pool, batch * per_row, [&](int64_t c) {
    const int64_t b = c / per_row, lo = (c % per_row) * kChunk, hi = std::min(n, lo + kChunk);
    const Weights<H, M> w(weights.typed_data() + b * Weights<H, M>::kSize);
    const float* h_in = carry.typed_data() + b * H * n;
    const float* p = params.typed_data() + b * n;
    const float* g = grad.typed_data() + b * n;
    const float* mom = new_momenta->typed_data() + b * kMomenta * n;
    const float* scale = leaf_scale.data() + b * leaves * kNormalised;
    const float* layer = layer_proportion.typed_data() + b * n;
    const float* dorm = dormancy.typed_data() + b * n;
    const float* eps = noisy ? noise.typed_data() + b * n : nullptr;
    float* h_out = new_carry->typed_data() + b * H * n;
    float* out = step->typed_data() + b * n;

    // The progress features are the same for every parameter: fold them into the bias.
    float bias[3 * H];
    const float tp = progress.typed_data()[2 * b], ep = progress.typed_data()[2 * b + 1];
    for (int u = 0; u < 3 * H; ++u)
      bias[u] = w.b_in[u] + w.w_in[u * kFeatures + kTrainingProgress] * tp + w.w_in[u * kFeatures + kEpochProgress] * ep;

    int64_t leaf = 0;
    while (leaf + 1 < leaves && starts[leaf + 1] <= lo) ++leaf;
    for (int64_t i = lo; i < hi; i += kLanes) {
      while (leaf + 1 < leaves && starts[leaf + 1] <= i) ++leaf;
      vf s[kNormalised];
      // The padding takes the last leaf's factors, as FlatLayout.scale_segments gives it.
      if (leaf + 1 == leaves || starts[leaf + 1] >= i + kLanes) {
        for (int f = 0; f < kNormalised; ++f) s[f] = splat(scale[leaf * kNormalised + f]);
      } else {  // the block straddles leaves: pick each lane's factor
        for (int j = 0, l = leaf; j < kLanes; ++j) {
          while (l + 1 < leaves && starts[l + 1] <= i + j) ++l;
          for (int f = 0; f < kNormalised; ++f) s[f][j] = scale[l * kNormalised + f];
        }
      }
      vf x[kFeatures];
      raw_features(p, mom, g, n, i, log_eps, x);
      for (int f = 0; f < kNormalised; ++f) x[f] *= s[f];
      x[kLayerProportion] = load(layer + i);
      x[kDormancy] = load(dorm + i);

      vf h[H], hidden[H];
      for (int k = 0; k < H; ++k) h[k] = load(h_in + k * n + i);
      for (int u = 0; u < H; ++u) {
        vf a[3];
        for (int gate = 0; gate < 3; ++gate) {
          const int row = gate * H + u;
          const float* wr = w.w_in + row * kFeatures;
          vf acc = splat(bias[row]);
          for (int f = 0; f < kNormalised; ++f) acc += wr[f] * x[f];
          acc += wr[kLayerProportion] * x[kLayerProportion] + wr[kDormancy] * x[kDormancy];
          a[gate] = acc;
        }
        vf hr = splat(0.f), hz = splat(0.f), hn = splat(w.b_hn[u]);
        for (int k = 0; k < H; ++k) {
          hr += w.w_h[u * H + k] * h[k];
          hz += w.w_h[(H + u) * H + k] * h[k];
          hn += w.w_h[(2 * H + u) * H + k] * h[k];
        }
        vf r = logistic_of_half(a[0] + hr);
        vf t_z = tanh(a[1] + hz);
        vf nn = tanh(a[2] + r * hn);
        hidden[u] = h[u] + (0.5f - 0.5f * t_z) * (nn - h[u]);
      }
      for (int u = 0; u < H; ++u) store(h_out + u * n + i, hidden[u]);

      vf y0[M], y1[M];
      dense_norm_relu<H, M>(w.w0, w.b0, w.s1, w.c1, layer_norm_eps, hidden, y0);
      dense_norm_relu<M, M>(w.w3, w.b3, w.s4, w.c4, layer_norm_eps, y0, y1);
      vf o[kOutputs];
      for (int j = 0; j < kOutputs; ++j) {
        o[j] = splat(w.b6[j]);
        for (int m = 0; m < M; ++m) o[j] += w.w6[j * M + m] * y1[m];
      }
      vf result = o[0] * step_scale * exp(step_scale * o[1]);
      if (noisy) result += step_scale * o[2] * load(eps + i);
      store(out + i, result);
    }
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace metaopt

#define METAOPT_OPEN_BINDING                      \
  xla::ffi::Ffi::Bind()                           \
      .Ctx<xla::ffi::ThreadPool>()                \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Arg<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Attr<xla::ffi::Span<const int64_t>>("starts") \
      .Attr<int64_t>("size")                      \
      .Attr<xla::ffi::Span<const float>>("betas") \
      .Attr<float>("log_eps")                     \
      .Attr<float>("norm_eps")                    \
      .Attr<float>("layer_norm_eps")              \
      .Attr<float>("step_scale")                  \
      .Ret<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Ret<xla::ffi::Buffer<xla::ffi::F32>>()     \
      .Ret<xla::ffi::Buffer<xla::ffi::F32>>()

// One handler per network size, named and sized by the build (kernels/__init__.py).
#ifndef METAOPT_OPEN_HANDLERS
#error "compile through metaopt.optimizers.kernels.build(): it defines METAOPT_OPEN_HANDLERS"
#endif
#define METAOPT_DEFINE_OPEN(name, H, M) \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, (metaopt::Step<H, M>), METAOPT_OPEN_BINDING);
METAOPT_OPEN_HANDLERS(METAOPT_DEFINE_OPEN)
