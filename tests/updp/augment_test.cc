#include "server/updp/augment.h"

#include <gtest/gtest.h>

#include <array>
#include <random>

namespace updp::prompt {
namespace {

using Rgb = std::array<int, 3>;

Rgb Hue(Rgb in, double shift) {
  model::RgbImage img{1, 1, {uint8_t(in[0]), uint8_t(in[1]), uint8_t(in[2])}};
  AdjustHue(img, shift);
  return {img.pixels[0], img.pixels[1], img.pixels[2]};
}

TEST(AugmentHue, PrimariesRotateAroundTheColourCircle) {
  EXPECT_EQ(Hue({255, 0, 0}, 1.0 / 3), (Rgb{0, 255, 0}));
  EXPECT_EQ(Hue({255, 0, 0}, -1.0 / 3), (Rgb{0, 0, 255}));
  EXPECT_EQ(Hue({255, 0, 0}, 0.5), (Rgb{0, 255, 255}));
  EXPECT_EQ(Hue({0, 0, 255}, 1.0 / 3), (Rgb{255, 0, 0}));  // wraps modulo 1
}

TEST(AugmentHue, MatchesANumpyPortOfTorchvisionAdjustHueRounded) {
  // torchvision's float adjust_hue (_rgb2hsv, (h + f) % 1, _hsv2rgb) ported to NumPy float32,
  // then rounded to 8 bits (torchvision itself truncates x * 255.999, off by one at most).
  EXPECT_EQ(Hue({200, 100, 50}, 0.1), (Rgb{200, 190, 50}));
  EXPECT_EQ(Hue({12, 200, 77}, -0.25), (Rgb{200, 171, 12}));
  EXPECT_EQ(Hue({90, 60, 220}, 0.05), (Rgb{138, 60, 220}));
  EXPECT_EQ(Hue({250, 251, 3}, -0.1), (Rgb{251, 103, 3}));
}

TEST(AugmentHue, GreyIsUnchangedAndZeroShiftIsTheIdentity) {
  for (int v : {0, 1, 127, 254, 255}) EXPECT_EQ(Hue({v, v, v}, 0.3), (Rgb{v, v, v}));
  model::RgbImage img{0, 1, {}};
  for (int r = 0; r < 256; r += 5) {
    for (int g = 0; g < 256; g += 3) {
      for (int b = 0; b < 256; b += 7)
        img.pixels.insert(img.pixels.end(), {uint8_t(r), uint8_t(g), uint8_t(b)});
    }
  }
  img.width = static_cast<int>(img.pixels.size() / 3);
  model::RgbImage shifted = img;
  AdjustHue(shifted, 0.0);
  EXPECT_EQ(shifted.pixels, img.pixels);
  AdjustHue(shifted, 1.0);  // a full turn
  EXPECT_EQ(shifted.pixels, img.pixels);
}

TEST(Augment, OutputHasTheRequestedSizeAndIsDeterministic) {
  model::RgbImage img{40, 30, std::vector<uint8_t>(40 * 30 * 3)};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 7);
  AugmentOptions always;
  always.jitter_p = 1.0;
  std::mt19937_64 a(3), b(3);
  model::RgbImage x = Augment(img, 24, always, a), y = Augment(img, 24, always, b);
  EXPECT_EQ(x.width, 24);
  EXPECT_EQ(x.height, 24);
  EXPECT_EQ(x.pixels, y.pixels);
}

}  // namespace
}  // namespace updp::prompt
