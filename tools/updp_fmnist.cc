// updp-fmnist --out DIR [--split train|test] [--limit N] [--offset K]
// Writes images of Debian's dataset-fashion-mnist as PNG files DIR/NNNNN.png plus
// DIR/labels.txt and DIR/labels.npy (int64, in file-name order). Labels are only for
// evaluation; selection never sees them.
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "tools/fmnist_lib.h"
#include "server/util/flags_help.h"
#include "server/util/openmp_env.h"

ABSL_FLAG(std::string, out, "", "output folder");
ABSL_FLAG(std::string, split, "train", "train | test");
ABSL_FLAG(int, limit, 0, "number of images (0 = all)");
ABSL_FLAG(int, offset, 0, "first image");

int main(int argc, char** argv) {
  updp::PreferPassiveOpenMp(argv);  // before any OpenMP work; see openmp_env.h
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_out).empty()) {
    std::cerr << "usage: updp-fmnist --out DIR [--split train|test] [--limit N] [--offset K]\n";
    return 2;
  }
  auto d = updp::tools::LoadFashionMnist(absl::GetFlag(FLAGS_split));
  if (!d.ok()) {
    std::cerr << "updp-fmnist: " << d.status().message() << "\n";
    return 1;
  }
  auto s = updp::tools::ExportFashionMnistPng(*d, absl::GetFlag(FLAGS_out), absl::GetFlag(FLAGS_offset),
                                              absl::GetFlag(FLAGS_limit));
  if (!s.ok()) {
    std::cerr << "updp-fmnist: " << s.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << absl::GetFlag(FLAGS_split) << " images to " << absl::GetFlag(FLAGS_out) << "\n";
  return 0;
}
