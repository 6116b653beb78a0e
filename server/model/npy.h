// NumPy .npy arrays (format 1.0/2.0/3.0, little-endian, C order): memory-mapped
// reading of float64/float32/float16/int64/int32 arrays, reading in row blocks, and
// atomic writing.
#ifndef UPDP_SERVER_MODEL_NPY_H_
#define UPDP_SERVER_MODEL_NPY_H_

#include <torch/torch.h>

#include <memory>
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
// mapping lives as long as the tensor. Accepted dtypes: <f8, <f4, <f2, <i8, <i4.
absl::StatusOr<torch::Tensor> MapNpy(const std::string& path);

// An array read in blocks of rows with pread, for arrays larger than memory: memory is
// the caller's buffer. The header is read from the same descriptor as the rows.
class NpyReader {
 public:
  // As ReadNpyHeader; also INVALID_ARGUMENT for a 0-d array.
  static absl::StatusOr<std::unique_ptr<NpyReader>> Open(const std::string& path);
  ~NpyReader();
  NpyReader(const NpyReader&) = delete;
  NpyReader& operator=(const NpyReader&) = delete;

  const NpyHeader& header() const { return header_; }
  torch::ScalarType dtype() const { return dtype_; }
  // The element size times every dimension after the first.
  size_t row_bytes() const { return row_bytes_; }
  // Reads rows [begin, begin + count) into `out` (count * row_bytes() bytes).
  // DATA_LOSS when the file was cut short after Open().
  absl::Status ReadRows(int64_t begin, int64_t count, void* out) const;

 private:
  NpyReader() = default;
  std::string path_;
  int fd_ = -1;
  NpyHeader header_;
  torch::ScalarType dtype_ = torch::kFloat32;
  size_t row_bytes_ = 0;
};

// Writes a contiguous CPU copy of `t` (float64/float32/float16/int64/int32) atomically.
absl::Status WriteNpy(const std::string& path, const torch::Tensor& t);

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_NPY_H_
