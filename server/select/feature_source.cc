#include "server/select/feature_source.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace updp::select {

absl::StatusOr<FeatureSource> FeatureSource::Create(std::vector<torch::Tensor> parts,
                                                    bool normalize) {
  FeatureSource s;
  s.normalize_ = normalize;
  bool first = true;
  for (auto& t : parts) {
    if (!t.defined() || t.dim() != 2 || t.device().type() != torch::kCPU) {
      return absl::InvalidArgumentError("features: expected [N, D] CPU matrices");
    }
    const auto dt = t.scalar_type();
    if (dt != torch::kFloat16 && dt != torch::kBFloat16 && dt != torch::kFloat32 &&
        dt != torch::kFloat64) {
      return absl::InvalidArgumentError(
          absl::StrCat("features: dtype ", c10::toString(dt), " is not a floating type"));
    }
    if (!first && (t.size(1) != s.dim_ || dt != s.dtype_)) {
      return absl::InvalidArgumentError(absl::StrCat("features: parts disagree (", t.size(1),
                                                     " columns of ", c10::toString(dt), " after ",
                                                     s.dim_, " of ", c10::toString(s.dtype_), ")"));
    }
    first = false;
    s.dim_ = t.size(1);
    s.dtype_ = dt;
    if (t.size(0) == 0) continue;
    s.parts_.push_back({t.is_contiguous() ? t : t.contiguous(), s.rows_});
    s.rows_ += t.size(0);
  }
  return s;
}

absl::StatusOr<FeatureSource> FeatureSource::FromTensor(const torch::Tensor& x, bool normalize) {
  return Create({x}, normalize);
}

FeatureSource FeatureSource::WithNormalize(bool normalize) const {
  FeatureSource s = *this;
  s.normalize_ = normalize;
  return s;
}

const FeatureSource::Part& FeatureSource::PartOf(int64_t row) const {
  auto it = std::upper_bound(parts_.begin(), parts_.end(), row,
                             [](int64_t r, const Part& p) { return r < p.begin; });
  return *(it - 1);
}

torch::Tensor FeatureSource::Block(int64_t begin, int64_t len) const {
  torch::Tensor out = torch::empty({len, dim_});
  int64_t at = 0;
  while (at < len) {
    const Part& p = PartOf(begin + at);
    const int64_t local = begin + at - p.begin;
    const int64_t take = std::min(len - at, p.t.size(0) - local);
    out.narrow(0, at, take).copy_(p.t.narrow(0, local, take));
    at += take;
  }
  if (normalize_) out.div_(out.norm(2, 1, true).clamp_min_(1e-12));
  return out;
}

std::vector<std::pair<int64_t, int64_t>> FeatureSource::BlockRanges() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& p : parts_) {
    for (int64_t b = 0; b < p.t.size(0); b += kBlockRows) {
      out.emplace_back(p.begin + b, std::min(kBlockRows, p.t.size(0) - b));
    }
  }
  return out;
}

void FeatureSource::ForEachBlock(
    const std::function<bool(int64_t, const torch::Tensor&)>& fn) const {
  for (const auto& [begin, len] : BlockRanges()) {
    if (!fn(begin, Block(begin, len))) return;
  }
}

namespace {

// Rows are converted one at a time on the lazy k-center and gather paths, so the
// half-to-float step uses F16C eight lanes at a time where the CPU has it.
__attribute__((target("avx,f16c"))) void HalfToFloatF16c(const c10::Half* in, float* out,
                                                         int64_t d) {
  int64_t k = 0;
  for (; k + 8 <= d; k += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + k));
    _mm256_storeu_ps(out + k, _mm256_cvtph_ps(h));
  }
  for (; k < d; ++k) out[k] = static_cast<float>(in[k]);
}

void HalfToFloat(const c10::Half* in, float* out, int64_t d) {
  static const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  if (f16c) return HalfToFloatF16c(in, out, d);
  for (int64_t k = 0; k < d; ++k) out[k] = static_cast<float>(in[k]);
}

}  // namespace

void FeatureSource::ConvertRow(const Part& p, int64_t local, float* out) const {
  const int64_t d = dim_;
  switch (dtype_) {
    case torch::kFloat32:
      std::memcpy(out, p.t.data_ptr<float>() + local * d, d * sizeof(float));
      break;
    case torch::kFloat16:
      HalfToFloat(p.t.data_ptr<c10::Half>() + local * d, out, d);
      break;
    case torch::kBFloat16: {
      const c10::BFloat16* in = p.t.data_ptr<c10::BFloat16>() + local * d;
      for (int64_t k = 0; k < d; ++k) out[k] = static_cast<float>(in[k]);
      break;
    }
    default: {
      const double* in = p.t.data_ptr<double>() + local * d;
      for (int64_t k = 0; k < d; ++k) out[k] = static_cast<float>(in[k]);
    }
  }
  if (normalize_) {
    // Four double accumulators: the sum vectorises and keeps double precision.
    double a[4] = {0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 4 <= d; k += 4) {
      for (int j = 0; j < 4; ++j) a[j] += static_cast<double>(out[k + j]) * out[k + j];
    }
    for (; k < d; ++k) a[0] += static_cast<double>(out[k]) * out[k];
    const double s = (a[0] + a[1]) + (a[2] + a[3]);
    const float inv = static_cast<float>(1.0 / std::max(std::sqrt(s), 1e-12));
    for (int64_t k = 0; k < d; ++k) out[k] *= inv;
  }
}

void FeatureSource::Row(int64_t r, float* out) const {
  const Part& p = PartOf(r);
  ConvertRow(p, r - p.begin, out);
}

torch::Tensor FeatureSource::Gather(const std::vector<int64_t>& rows, ThreadPool* pool) const {
  const int64_t m = static_cast<int64_t>(rows.size());
  torch::Tensor out = torch::empty({m, dim_});
  float* o = out.data_ptr<float>();
  auto range = [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) Row(rows[i], o + i * dim_);
  };
  if (pool && m > 1024) {
    pool->ParallelRanges(m, range);
  } else {
    range(0, m);
  }
  return out;
}

namespace {

// True when any of the d values at p has its exponent bits all set (NaN or infinity).
// Plain integer loops: the compiler vectorises them.
template <typename Bits>
bool AnyNonFinite(const Bits* p, int64_t d, Bits exponent) {
  Bits bad = 0;
  for (int64_t k = 0; k < d; ++k) bad |= static_cast<Bits>((p[k] & exponent) == exponent);
  return bad != 0;
}

}  // namespace

bool FeatureSource::RowHasNonFinite(const Part& p, int64_t local) const {
  const char* row = static_cast<const char*>(p.t.data_ptr()) + local * dim_ * p.t.element_size();
  switch (dtype_) {
    case torch::kFloat16:
      return AnyNonFinite<uint16_t>(reinterpret_cast<const uint16_t*>(row), dim_, 0x7C00);
    case torch::kBFloat16:
      return AnyNonFinite<uint16_t>(reinterpret_cast<const uint16_t*>(row), dim_, 0x7F80);
    case torch::kFloat32:
      return AnyNonFinite<uint32_t>(reinterpret_cast<const uint32_t*>(row), dim_, 0x7F800000u);
    default: {  // float64: also values that overflow float32 when read
      const double* v = reinterpret_cast<const double*>(row);
      bool bad = false;
      for (int64_t k = 0; k < dim_; ++k)
        bad |= !(std::fabs(v[k]) <= std::numeric_limits<float>::max());
      return bad;
    }
  }
}

int64_t FeatureSource::FirstNonFiniteRow(ThreadPool* pool) const {
  std::atomic<int64_t> first{-1};
  auto scan = [&](int64_t lo, int64_t hi) {  // global rows [lo, hi), part by part
    for (const Part& p : parts_) {
      const int64_t end = std::min(hi, p.begin + p.t.size(0));
      for (int64_t r = std::max(lo, p.begin); r < end; ++r) {
        if (!RowHasNonFinite(p, r - p.begin)) continue;
        int64_t cur = first.load();
        while ((cur < 0 || r < cur) && !first.compare_exchange_weak(cur, r)) {
        }
        return;  // later rows of this range cannot be earlier
      }
    }
  };
  if (pool != nullptr && rows_ > kBlockRows) {
    pool->ParallelRanges(rows_, scan);
  } else {
    scan(0, rows_);
  }
  return first.load();
}

}  // namespace updp::select
