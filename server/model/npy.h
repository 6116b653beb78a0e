// NumPy .npy arrays (format 1.0/2.0/3.0, little-endian, C order): memory-mapped
// reading of 1-D/2-D float32/float16/int64 arrays, and atomic writing.
#ifndef UPDP_SERVER_MODEL_NPY_H_
#define UPDP_SERVER_MODEL_NPY_H_

#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace updp::model {

struct NpyHeader {
  std::string descr;  // e.g. "<f4"
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;
};

// Parses and validates the header of `path` (size consistent with the shape).
// NotFound when it cannot be opened; InvalidArgument, with a short message naming the
// file, for anything else wrong (not a regular file, header over 1 MiB, malformed dict,
// unsupported dtype, shape too large for 64 bits or for the file).
absl::StatusOr<NpyHeader> ReadNpyHeader(const std::string& path);

// A read-only tensor backed by a private memory map of the file (no copy). The
// mapping lives as long as the tensor. Accepted dtypes: <f4, <f2, <i8, <i4.
absl::StatusOr<torch::Tensor> MapNpy(const std::string& path);

// Writes a contiguous CPU copy of `t` (float32/float16/int64/int32) atomically.
absl::Status WriteNpy(const std::string& path, const torch::Tensor& t);

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_NPY_H_
