#include "tools/fmnist_lib.h"

#include <zlib.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "server/model/image_codec.h"
#include "server/model/npy.h"

namespace updp::tools {
namespace {

absl::StatusOr<std::vector<uint8_t>> ReadGz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open (apt-get install dataset-fashion-mnist)"));
  }
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.insert(out.end(), buf, buf + n);
  gzclose(f);
  return out;
}

uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

absl::StatusOr<FashionMnist> LoadFashionMnist(const std::string& split, const std::string& dir) {
  if (split != "train" && split != "test") {
    return absl::InvalidArgumentError("split: expected train or test");
  }
  const std::string prefix = dir + "/" + (split == "train" ? "train" : "t10k");
  auto images = ReadGz(prefix + "-images-idx3-ubyte.gz");
  if (!images.ok()) return images.status();
  auto labels = ReadGz(prefix + "-labels-idx1-ubyte.gz");
  if (!labels.ok()) return labels.status();
  if (images->size() < 16 || Be32(images->data()) != 2051 || labels->size() < 8 ||
      Be32(labels->data()) != 2049) {
    return absl::DataLossError(absl::StrCat(prefix, ": not IDX files"));
  }
  FashionMnist d;
  const uint32_t n = Be32(images->data() + 4);
  d.rows = static_cast<int>(Be32(images->data() + 8));
  d.cols = static_cast<int>(Be32(images->data() + 12));
  if (images->size() < 16 + size_t{n} * d.rows * d.cols || labels->size() < 8 + n) {
    return absl::DataLossError(absl::StrCat(prefix, ": truncated"));
  }
  d.pixels.assign(images->begin() + 16, images->begin() + 16 + size_t{n} * d.rows * d.cols);
  d.labels.assign(labels->begin() + 8, labels->begin() + 8 + n);
  return d;
}

absl::Status ExportFashionMnistPng(const FashionMnist& d, const std::string& out_dir, int offset,
                                   int limit) {
  const int n = static_cast<int>(d.labels.size());
  if (offset < 0 || offset >= n) return absl::InvalidArgumentError("offset: out of range");
  if (limit <= 0 || offset + limit > n) limit = n - offset;
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  std::vector<int64_t> lab;
  std::string text;
  for (int i = offset; i < offset + limit; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "/%05d.png", i);
    absl::Status written = model::WriteGrayPng(
        out_dir + name, d.cols, d.rows, d.pixels.data() + static_cast<size_t>(i) * d.rows * d.cols);
    if (!written.ok()) return written;
    lab.push_back(d.labels[i]);
    absl::StrAppend(&text, d.labels[i], "\n");
  }
  FILE* f = std::fopen((out_dir + "/labels.txt").c_str(), "w");
  if (!f) return absl::InternalError(out_dir + "/labels.txt: cannot write");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  return model::WriteNpy(out_dir + "/labels.npy", torch::tensor(lab, torch::kLong));
}

}  // namespace updp::tools
