// Streaming a .npy into feature chunks: chunk boundaries, dtypes, the NaN/Inf check in
// the copy pass, and nothing left behind on an error.
#include "server/model/feature_import.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "server/model/npy.h"
#include "server/model/safetensors.h"
#include "server/util/atomic_file.h"
#include "tests/model/scratch_dir.h"

namespace updp::model {
namespace {

class FeatureImportTest : public ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    out_ = TmpPath("chunks");
    std::filesystem::create_directories(out_);
  }
  std::string Npy(const torch::Tensor& x) {
    const std::string p = TmpPath("x.npy");
    EXPECT_TRUE(WriteNpy(p, x).ok());
    return p;
  }
  absl::StatusOr<FeatureImport> Import(const torch::Tensor& x, int64_t chunk_rows,
                                       size_t block_bytes = size_t{8} << 20) {
    return ImportNpyFeatures(
        Npy(x), chunk_rows, [&](int64_t c) { return absl::StrCat(out_, "/c", c, ".safetensors"); },
        block_bytes);
  }
  size_t FilesLeft() const {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(out_)) n += e.is_regular_file();
    return n;
  }
  std::string out_;
};

TEST_F(FeatureImportTest, RowsGoToChunksOfAtMostChunkRowsWithTheirIndex) {
  torch::Tensor x = torch::randn({10, 3});
  // Blocks of one row (12 bytes) and of the whole chunk give the same files.
  for (size_t block : {size_t{12}, size_t{1} << 20}) {
    auto r = Import(x, 4, block);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->rows, 10);
    EXPECT_EQ(r->dim, 3);
    EXPECT_EQ(r->dtype, torch::kFloat32);
    ASSERT_EQ(r->chunks.size(), 3u);
    for (int64_t c = 0; c < 3; ++c) {
      const ImportedChunk& ch = r->chunks[c];
      EXPECT_EQ(ch.chunk, c);
      EXPECT_EQ(ch.rows, c < 2 ? 4 : 2);
      auto f = SafetensorsFile::Open(ch.path);
      ASSERT_TRUE(f.ok()) << f.status();
      EXPECT_EQ((*f)->tensors().size(), 2u);
      EXPECT_TRUE(torch::equal(*(*f)->Get("features"), x.narrow(0, 4 * c, ch.rows)));
      EXPECT_TRUE(torch::equal(*(*f)->Get("index"), torch::arange(4 * c, 4 * c + ch.rows)));
      // Byte for byte what WriteSafetensors writes for the same tensors.
      EXPECT_EQ(*ReadFile(ch.path),
                SerializeSafetensors({{"features", x.narrow(0, 4 * c, ch.rows).contiguous()},
                                      {"index", torch::arange(4 * c, 4 * c + ch.rows)}}));
    }
  }
}

TEST_F(FeatureImportTest, Float16StaysFloat16AndFloat64IsStoredAsFloat32) {
  torch::Tensor h = torch::randn({5, 4}).to(torch::kFloat16);
  auto r = Import(h, 100);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->chunks.size(), 1u);
  auto f = SafetensorsFile::Open(r->chunks[0].path);
  EXPECT_EQ((*f)->tensors().at("features").dtype, "F16");
  EXPECT_TRUE(torch::equal(*(*f)->Get("features"), h));

  torch::Tensor d = torch::randn({7, 4}, torch::kFloat64) * 1e30;
  r = Import(d, 3, 40);  // blocks of one float64 row
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dtype, torch::kFloat32);
  ASSERT_EQ(r->chunks.size(), 3u);
  for (int64_t c = 0; c < 3; ++c) {
    auto g = SafetensorsFile::Open(r->chunks[c].path);
    EXPECT_EQ((*g)->tensors().at("features").dtype, "F32");
    EXPECT_TRUE(torch::equal(*(*g)->Get("features"),
                             d.narrow(0, 3 * c, r->chunks[c].rows).to(torch::kFloat32)));
  }
}

TEST_F(FeatureImportTest, TheFirstBadRowIsNamedAndNoChunkIsLeft) {
  torch::Tensor x = torch::randn({10, 3});
  x[9][2] = std::numeric_limits<float>::quiet_NaN();  // in the last chunk
  auto r = Import(x, 4, 12);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("row 9 contains NaN or Inf"), std::string::npos)
      << r.status();
  EXPECT_EQ(FilesLeft(), 0u);

  torch::Tensor h = torch::randn({10, 3}).to(torch::kFloat16);
  h[5][0] = std::numeric_limits<float>::infinity();
  h[8][0] = std::numeric_limits<float>::quiet_NaN();
  r = Import(h, 4);
  EXPECT_NE(r.status().message().find("row 5 contains NaN or Inf"), std::string::npos)
      << r.status();
  EXPECT_EQ(FilesLeft(), 0u);

  torch::Tensor d = torch::randn({6, 2}, torch::kFloat64);
  d[4][1] = 1e300;  // finite, but not a float32
  r = Import(d, 4);
  EXPECT_NE(r.status().message().find("row 4 has a value outside the float32 range"),
            std::string::npos)
      << r.status();
  d[4][1] = -std::numeric_limits<double>::infinity();
  r = Import(d, 4);
  EXPECT_NE(r.status().message().find("row 4 contains NaN or Inf"), std::string::npos)
      << r.status();
  EXPECT_EQ(FilesLeft(), 0u);
}

TEST_F(FeatureImportTest, RefusesOtherDtypesAndShapes) {
  auto r = Import(torch::arange(10, torch::kLong).view({5, 2}), 4);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("is not float16, float32 or float64"), std::string::npos)
      << r.status();
  for (const torch::Tensor& x :
       {torch::randn({10}), torch::zeros({0, 3}), torch::zeros({3, 0}), torch::randn({2, 2, 2})}) {
    r = Import(x, 4);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << x.sizes();
    EXPECT_NE(r.status().message().find("[N, D]"), std::string::npos) << r.status();
  }
  EXPECT_EQ(ImportNpyFeatures(TmpPath("none.npy"), 4, [](int64_t) { return std::string(); })
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(FilesLeft(), 0u);
}

}  // namespace
}  // namespace updp::model
