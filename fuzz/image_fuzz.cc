// Image decoding (libjpeg-turbo with the EXIF orientation, libpng, libwebp) and the
// BLIP-2 preprocessing of whatever decodes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "server/model/image_codec.h"
#include "server/model/image_preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<updp::model::RgbImage> img = updp::model::DecodeImageBytes(bytes, "fuzz");
  if (!img.ok()) return 0;
  if (img->width <= 0 || img->height <= 0 ||
      img->pixels.size() != static_cast<size_t>(img->width) * img->height * 3) {
    std::abort();  // a decoded image whose buffer does not match its size
  }
  // The tiny model's 28 px and a non-square resize (both directions of the bicubic filter).
  const std::vector<float> x = updp::model::PreprocessForBlip2(*img, 28);
  if (x.size() != 3u * 28 * 28) std::abort();
  for (float v : x) {
    if (!std::isfinite(v)) std::abort();
  }
  const updp::model::RgbImage r = updp::model::ResizeBicubicPillow(*img, 5, 37);
  if (r.width != 5 || r.height != 37 || r.pixels.size() != 5u * 37 * 3) std::abort();
  return 0;
}
