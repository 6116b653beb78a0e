// The .npy reader (embeddings imports): header parsing, the memory-mapped tensor and
// the row-block reader, on a file holding the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "fuzz/common.h"
#include "server/model/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = updp::fuzz::WriteInput("input.npy", data, size);
  absl::StatusOr<updp::model::NpyHeader> h = updp::model::ReadNpyHeader(path);
  absl::StatusOr<torch::Tensor> t = updp::model::MapNpy(path);
  if (h.ok() != t.ok()) std::abort();  // the header decides for both
  if (t.ok()) {
    if (t->sizes().vec() != h->shape) std::abort();
    // Touch every byte the tensor claims (ASan sees a read past the mapping or buffer).
    const auto* p = static_cast<const volatile uint8_t*>(t->data_ptr());
    const size_t n = static_cast<size_t>(t->numel()) * t->element_size();
    uint8_t sum = 0;
    for (size_t i = 0; i < n; ++i) sum += p[i];
    (void)sum;
  }
  absl::StatusOr<std::unique_ptr<updp::model::NpyReader>> r = updp::model::NpyReader::Open(path);
  if (r.ok()) {
    if (!h.ok()) std::abort();
    const int64_t rows = (*r)->header().shape[0];
    const size_t row_bytes = (*r)->row_bytes();
    // A few rows from each end, and out-of-range requests that must be refused.
    const int64_t count = rows < 3 ? rows : 3;
    std::vector<uint8_t> buf(static_cast<size_t>(count) * row_bytes + 1);
    if (!(*r)->ReadRows(0, count, buf.data()).ok()) std::abort();
    if (!(*r)->ReadRows(rows - count, count, buf.data()).ok()) std::abort();
    if ((*r)->ReadRows(rows, 1, buf.data()).ok()) std::abort();
    if ((*r)->ReadRows(1, INT64_MAX, buf.data()).ok()) std::abort();
  }
  return 0;
}
