// Reads Debian's dataset-fashion-mnist IDX files and writes images as PNG.
#ifndef UPDP_TOOLS_FMNIST_LIB_H_
#define UPDP_TOOLS_FMNIST_LIB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace updp::tools {

inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

struct FashionMnist {
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // n * rows * cols
  std::vector<int64_t> labels;
};

// split: "train" (60k) or "test" (10k).
absl::StatusOr<FashionMnist> LoadFashionMnist(const std::string& split,
                                              const std::string& dir = kFashionMnistDir);
// Writes images [offset, offset+limit) as DIR/NNNNN.png plus labels.txt/labels.npy.
absl::Status ExportFashionMnistPng(const FashionMnist& d, const std::string& out_dir, int offset,
                                   int limit);

}  // namespace updp::tools

#endif  // UPDP_TOOLS_FMNIST_LIB_H_
