#include "server/model/feature_import.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/model/npy.h"
#include "server/model/safetensors.h"
#include "server/util/error_text.h"

namespace updp::model {
namespace {

// The first of v[0..n) whose exponent bits are all set (Inf or NaN), or n. A
// branch-free pass first (it vectorises); the position is looked for only when there is
// one.
template <typename Bits>
size_t FirstNonFinite(const Bits* v, size_t n, Bits exp_mask) {
  int bad = 0;
  for (size_t i = 0; i < n; ++i) bad |= (v[i] & exp_mask) == exp_mask;
  if (!bad) return n;
  for (size_t i = 0; i < n; ++i) {
    if ((v[i] & exp_mask) == exp_mask) return i;
  }
  return n;
}

// Removes the chunk files written so far unless released (an import that fails half
// way leaves nothing).
class ChunkFiles {
 public:
  explicit ChunkFiles(std::vector<ImportedChunk>* chunks) : chunks_(chunks) {}
  ~ChunkFiles() {
    if (!keep_) {
      for (const auto& c : *chunks_) ::unlink(c.path.c_str());
    }
  }
  void Keep() { keep_ = true; }

 private:
  std::vector<ImportedChunk>* chunks_;
  bool keep_ = false;
};

}  // namespace

absl::StatusOr<FeatureImport> ImportNpyFeatures(
    const std::string& npy, int64_t chunk_rows,
    const std::function<std::string(int64_t chunk)>& chunk_path, size_t block_bytes,
    const std::function<bool(int64_t done, int64_t total)>& progress) {
  auto reader = NpyReader::Open(npy);
  if (!reader.ok()) return reader.status();
  const NpyHeader& h = (*reader)->header();
  const torch::ScalarType in = (*reader)->dtype();
  if (in != torch::kFloat16 && in != torch::kFloat32 && in != torch::kFloat64) {
    return absl::InvalidArgumentError(
        absl::StrCat(npy, ": dtype ", Quote(h.descr), " is not float16, float32 or float64"));
  }
  if (h.shape.size() != 2 || h.shape[0] == 0 || h.shape[1] == 0) {
    return absl::InvalidArgumentError(absl::StrCat(npy, ": expected a non-empty [N, D] array"));
  }
  FeatureImport out;
  out.rows = h.shape[0];
  out.dim = h.shape[1];
  out.dtype = in == torch::kFloat64 ? torch::kFloat32 : in;
  chunk_rows = std::max<int64_t>(1, chunk_rows);
  const size_t dim = static_cast<size_t>(out.dim);
  const size_t out_row_bytes = dim * c10::elementSize(out.dtype);
  const int64_t block_rows = std::min<int64_t>(
      {std::max<int64_t>(1, block_bytes / (*reader)->row_bytes()), chunk_rows, out.rows});
  std::vector<char> block(static_cast<size_t>(block_rows) * (*reader)->row_bytes());
  std::vector<float> converted(in == torch::kFloat64 ? block_rows * dim : 0);
  std::vector<int64_t> index(static_cast<size_t>(std::min<int64_t>(chunk_rows, 65536)));
  ChunkFiles files(&out.chunks);
  for (int64_t c = 0; c * chunk_rows < out.rows; ++c) {
    const int64_t first = c * chunk_rows, n = std::min(chunk_rows, out.rows - first);
    ImportedChunk chunk{c, n, chunk_path(c)};
    auto w = SafetensorsWriter::Create(
        chunk.path, {{"features", out.dtype, {n, out.dim}}, {"index", torch::kInt64, {n}}});
    if (!w.ok()) return w.status();
    for (int64_t r = first; r < first + n; r += block_rows) {
      const int64_t k = std::min(block_rows, first + n - r);
      const size_t values = static_cast<size_t>(k) * dim;
      if (auto s = (*reader)->ReadRows(r, k, block.data()); !s.ok()) return s;
      const void* data = block.data();
      size_t bad = values;
      if (in == torch::kFloat16) {
        bad = FirstNonFinite(reinterpret_cast<const uint16_t*>(data), values, uint16_t{0x7c00});
      } else {
        if (in == torch::kFloat64) {
          const double* d = reinterpret_cast<const double*>(block.data());
          for (size_t i = 0; i < values; ++i) converted[i] = static_cast<float>(d[i]);
          data = converted.data();
        }
        // Also catches a finite float64 that overflows float32.
        bad = FirstNonFinite(reinterpret_cast<const uint32_t*>(data), values, 0x7f800000u);
      }
      if (bad < values) {
        const bool range = in == torch::kFloat64 &&
                           std::isfinite(reinterpret_cast<const double*>(block.data())[bad]);
        return absl::InvalidArgumentError(absl::StrCat(
            npy, ": row ", r + static_cast<int64_t>(bad / dim),
            range ? " has a value outside the float32 range" : " contains NaN or Inf"));
      }
      if (auto s = (*w)->Append(data, static_cast<size_t>(k) * out_row_bytes); !s.ok()) return s;
      if (progress && !progress(r + k, out.rows)) {
        return absl::CancelledError(absl::StrCat(npy, ": import stopped at row ", r + k));
      }
    }
    for (int64_t r = first; r < first + n; r += static_cast<int64_t>(index.size())) {
      const int64_t k = std::min(static_cast<int64_t>(index.size()), first + n - r);
      for (int64_t i = 0; i < k; ++i) index[i] = r + i;
      if (auto s = (*w)->Append(index.data(), static_cast<size_t>(k) * sizeof(int64_t)); !s.ok()) {
        return s;
      }
    }
    if (auto s = (*w)->Commit(); !s.ok()) return s;
    out.chunks.push_back(std::move(chunk));
  }
  files.Keep();
  return out;
}

}  // namespace updp::model
