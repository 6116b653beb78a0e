// The safetensors reader as the model checkpoint uses it: a memory-mapped file, every
// tensor copied (Get, with and without a dtype conversion) and viewed in place
// (MapTensor).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "fuzz/common.h"
#include "server/model/safetensors.h"

namespace {

// Reads every byte of `t` so that ASan sees any view past the data.
void Touch(const torch::Tensor& t) {
  const auto* p = static_cast<const volatile uint8_t*>(t.data_ptr());
  const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
  uint8_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p[i];
  (void)sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = updp::fuzz::WriteInput("input.safetensors", data, size);
  absl::StatusOr<std::unique_ptr<updp::model::SafetensorsFile>> opened =
      updp::model::SafetensorsFile::Open(path);
  if (!opened.ok()) return 0;
  std::shared_ptr<const updp::model::SafetensorsFile> f = std::move(*opened);
  for (const auto& [name, info] : f->tensors()) {
    if (info.begin > info.end || info.end > f->data_bytes()) std::abort();
    absl::StatusOr<torch::Tensor> t = f->Get(name);
    if (!t.ok()) std::abort();  // a validated entry must load
    if (t->sizes().vec() != info.shape) std::abort();
    if (static_cast<size_t>(t->numel()) * t->element_size() != info.end - info.begin) std::abort();
    Touch(*t);
    absl::StatusOr<torch::Tensor> as = f->Get(name, torch::kFloat32);
    if (!as.ok() || as->scalar_type() != torch::kFloat32) std::abort();
    absl::StatusOr<torch::Tensor> view = updp::model::SafetensorsFile::MapTensor(f, name);
    if (!view.ok()) std::abort();
    Touch(*view);
  }
  return 0;
}
