// Report thumbnails: shrunk to fit, aspect kept, never enlarged, valid JPEG.
#include "server/model/thumbnail.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "server/model/image_codec.h"

namespace updp::model {
namespace {

std::string WritePng(int w, int h) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) px[static_cast<size_t>(y) * w + x] = static_cast<uint8_t>(x + y);
  const std::string path = ::testing::TempDir() + "/thumb_" + std::to_string(getpid()) + "_" +
                           std::to_string(w) + "x" + std::to_string(h) + ".png";
  EXPECT_TRUE(WriteGrayPng(path, w, h, px.data()).ok());
  return path;
}

TEST(ThumbnailTest, ShrinksToFitKeepingTheAspect) {
  auto t = MakeThumbnail(WritePng(300, 150), 64);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->width, 64);
  EXPECT_EQ(t->height, 32);
  auto back = DecodeJpeg(t->jpeg, "thumb");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->width, 64);
  EXPECT_EQ(back->height, 32);
}

TEST(ThumbnailTest, SmallImagesAreNotEnlarged) {
  auto t = MakeThumbnail(WritePng(28, 20), 128);
  ASSERT_TRUE(t.ok()) << t.status();
  auto back = DecodeJpeg(t->jpeg, "thumb");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->width, 28);
  EXPECT_EQ(back->height, 20);
  // The gray ramp survives (JPEG is lossy: within a few levels).
  const int x = 10, y = 5;
  EXPECT_NEAR(back->pixels[(static_cast<size_t>(y) * 28 + x) * 3], x + y, 6);
}

TEST(ThumbnailTest, CorruptFileIsAnErrorNamingIt) {
  const std::string path =
      ::testing::TempDir() + "/thumb_corrupt_" + std::to_string(getpid()) + ".png";
  std::ofstream(path) << "not an image at all";
  auto t = MakeThumbnail(path, 64);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(path), std::string::npos) << t.status();
}

}  // namespace
}  // namespace updp::model
