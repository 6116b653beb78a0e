// Image decoding (JPEG via libjpeg-turbo with the EXIF orientation applied, PNG via libpng, WebP
// via libwebp: the codecs Pillow uses; see image_codec.h) and BLIP-2 preprocessing that
// reproduces Pillow's 8-bit BICUBIC resize.
#ifndef UPDP_SERVER_MODEL_IMAGE_PREPROCESS_H_
#define UPDP_SERVER_MODEL_IMAGE_PREPROCESS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace updp::model {

// 8-bit interleaved RGB image.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // height * width * 3
};

// Decodes a JPEG, PNG or WebP file (format found from its first bytes, not its name) to what
// Pillow's convert("RGB") gives: grayscale replicated, palette expanded, alpha dropped. A missing,
// corrupt, truncated, oversized (> kMaxImagePixels) or other-format file is an error naming it.
absl::StatusOr<RgbImage> DecodeImageFile(const std::string& path);
absl::StatusOr<RgbImage> DecodeImageBytes(const std::string& bytes, const std::string& name);

// Pillow-compatible separable BICUBIC resize in 8 bits (horizontal pass, then vertical,
// each rounded and clamped to 0..255; antialiased when shrinking).
RgbImage ResizeBicubicPillow(const RgbImage& in, int out_width, int out_height);

struct Normalization {
  float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
};

// Resize to size x size, scale 1/255, normalise: CHW float32 (3*size*size values).
std::vector<float> PreprocessForBlip2(const RgbImage& img, int size,
                                      const Normalization& norm = Normalization());

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_IMAGE_PREPROCESS_H_
