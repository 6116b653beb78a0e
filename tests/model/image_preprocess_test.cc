#include "server/model/image_preprocess.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "absl/strings/match.h"

#include "server/util/atomic_file.h"
#include "server/model/safetensors.h"

namespace updp::model {
namespace {

const std::string kDir = std::string(UPDP_FIXTURES) + "/images";

// A file far larger than any photo (sparse here) is refused by size, before its bytes
// are allocated, with an error naming it.
TEST(ImageFile, HugeFileIsRefusedBeforeReading) {
  const std::string path = ::testing::TempDir() + "/huge.jpg";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  const unsigned char soi[] = {0xFF, 0xD8, 0xFF};
  ASSERT_EQ(::write(fd, soi, sizeof(soi)), 3);
  ASSERT_EQ(::ftruncate(fd, int64_t{300} << 20), 0);
  ::close(fd);
  auto img = DecodeImageFile(path);
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(img.status().message(), path)) << img.status();
  EXPECT_TRUE(absl::StrContains(img.status().message(), "256 MiB")) << img.status();
  ::unlink(path.c_str());
}

class ImageFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = SafetensorsFile::Open(kDir + "/expected_pixels.safetensors");
    ASSERT_TRUE(f.ok()) << f.status();
    file_ = std::move(*f);
  }
  double MaxDiff(const std::string& image, int index) {
    auto img = DecodeImageFile(kDir + "/" + image);
    EXPECT_TRUE(img.ok()) << img.status();
    auto px = PreprocessForBlip2(*img, 224);
    torch::Tensor got = torch::from_blob(px.data(), {3, 224, 224}).clone();
    torch::Tensor want = (*file_->Get("pixel_values"))[index];
    return (got - want).abs().max().item<double>();
  }
  std::unique_ptr<SafetensorsFile> file_;
};

TEST_F(ImageFixture, DecodesToReferenceRgb) {
  const char* names[] = {"gradient_rgb_40x30.png", "gray_17x23.png", "pattern_rgb_64x48_q90.jpg"};
  for (int i = 0; i < 3; ++i) {
    auto img = DecodeImageFile(kDir + "/" + names[i]);
    ASSERT_TRUE(img.ok());
    torch::Tensor want = *file_->Get("decoded_rgb_" + std::to_string(i));
    ASSERT_EQ(want.size(0), img->height);
    ASSERT_EQ(want.size(1), img->width);
    torch::Tensor got = torch::from_blob(img->pixels.data(), {img->height, img->width, 3},
                                         torch::kUInt8).to(torch::kInt32);
    int max_diff = (got - want.to(torch::kInt32)).abs().max().item<int>();
    // libpng and libjpeg-turbo (default settings, as Pillow) decode exactly like the reference.
    EXPECT_EQ(max_diff, 0) << names[i];
  }
}

TEST_F(ImageFixture, PngPixelValuesMatchPillowExactly) {
  EXPECT_LT(MaxDiff("gradient_rgb_40x30.png", 0), 1e-5);
  EXPECT_LT(MaxDiff("gray_17x23.png", 1), 1e-5);
}

TEST_F(ImageFixture, JpegPixelValuesMatchPillowExactly) {
  const double d = MaxDiff("pattern_rgb_64x48_q90.jpg", 2);
  EXPECT_LT(d, 1e-5) << d;
}

TEST(ImagePreprocess, DownscaleIsAntialiasedAndBounded) {
  // A 2-pixel checkerboard shrunk 8x averages to grey when antialiased.
  RgbImage img{448, 448, std::vector<uint8_t>(448 * 448 * 3)};
  for (int y = 0; y < 448; ++y)
    for (int x = 0; x < 448; ++x)
      for (int c = 0; c < 3; ++c) img.pixels[(y * 448 + x) * 3 + c] = ((x + y) % 2) ? 255 : 0;
  RgbImage r = ResizeBicubicPillow(img, 56, 56);
  for (int i = 3 * 56 * 5; i < 3 * 56 * 50; ++i) {
    EXPECT_NEAR(r.pixels[i], 128, 3);
  }
}

TEST(ImagePreprocess, CorruptFileIsAnErrorNamingTheFile) {
  std::string p = ::testing::TempDir() + "/corrupt.jpg";
  ASSERT_TRUE(WriteFileAtomically(p, "\xff\xd8\xff\xe0 this is not a jpeg").ok());
  auto img = DecodeImageFile(p);
  EXPECT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("corrupt.jpg"), std::string::npos);
  EXPECT_FALSE(DecodeImageFile(::testing::TempDir() + "/missing.png").ok());
}

}  // namespace
}  // namespace updp::model
