// updp-fmnist --out DIR [--split train|test] [--limit N] [--offset K]
// Writes images of Debian's dataset-fashion-mnist (IDX, gzip) as PNG files
// DIR/NNNNN.png plus DIR/labels.txt and DIR/labels.npy (int64, in file-name order).
// Labels are only for evaluation; selection never sees them.
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "server/model/npy.h"

ABSL_FLAG(std::string, out, "", "output folder");
ABSL_FLAG(std::string, split, "train", "train | test");
ABSL_FLAG(int, limit, 0, "number of images (0 = all)");
ABSL_FLAG(int, offset, 0, "first image");
ABSL_FLAG(std::string, source, "/usr/share/datasets/fashion-mnist", "IDX folder");

namespace {

std::vector<uint8_t> ReadGz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) {
    std::cerr << "updp-fmnist: cannot open " << path << " (apt-get install dataset-fashion-mnist)\n";
    std::exit(1);
  }
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.insert(out.end(), buf, buf + n);
  gzclose(f);
  return out;
}

uint32_t Be32(const uint8_t* p) { return (p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out), split = absl::GetFlag(FLAGS_split);
  if (out.empty() || (split != "train" && split != "test")) {
    std::cerr << "usage: updp-fmnist --out DIR [--split train|test] [--limit N] [--offset K]\n";
    return 2;
  }
  const std::string prefix = absl::GetFlag(FLAGS_source) + "/" + (split == "train" ? "train" : "t10k");
  auto images = ReadGz(prefix + "-images-idx3-ubyte.gz");
  auto labels = ReadGz(prefix + "-labels-idx1-ubyte.gz");
  if (images.size() < 16 || Be32(images.data()) != 2051 || labels.size() < 8 ||
      Be32(labels.data()) != 2049) {
    std::cerr << "updp-fmnist: not IDX files\n";
    return 1;
  }
  const int n = static_cast<int>(Be32(images.data() + 4));
  const int rows = static_cast<int>(Be32(images.data() + 8)), cols = static_cast<int>(Be32(images.data() + 12));
  const int offset = absl::GetFlag(FLAGS_offset);
  int limit = absl::GetFlag(FLAGS_limit);
  if (limit <= 0 || offset + limit > n) limit = n - offset;
  std::filesystem::create_directories(out);
  std::vector<int64_t> lab;
  FILE* lt = std::fopen((out + "/labels.txt").c_str(), "w");
  for (int i = offset; i < offset + limit; ++i) {
    cv::Mat img(rows, cols, CV_8UC1, images.data() + 16 + static_cast<size_t>(i) * rows * cols);
    char name[64];
    std::snprintf(name, sizeof(name), "/%05d.png", i);
    cv::imwrite(out + name, img);
    lab.push_back(labels[8 + i]);
    std::fprintf(lt, "%d\n", labels[8 + i]);
  }
  std::fclose(lt);
  auto s = updp::model::WriteNpy(out + "/labels.npy", torch::tensor(lab, torch::kLong));
  if (!s.ok()) {
    std::cerr << "updp-fmnist: " << s.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << limit << " " << split << " images to " << out << "\n";
  return 0;
}
