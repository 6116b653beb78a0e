// Small JPEG previews of images for the selection report: decoded by the same
// decoders as the embedding (DecodeImageFile), shrunk with the antialiased Pillow
// bicubic resize, encoded by libjpeg-turbo.
#ifndef UPDP_SERVER_MODEL_THUMBNAIL_H_
#define UPDP_SERVER_MODEL_THUMBNAIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/model/image_preprocess.h"

namespace updp::model {

struct Thumbnail {
  std::string jpeg;
  int width = 0;
  int height = 0;
};

// The image at `path` shrunk to fit max_side x max_side, aspect kept (never enlarged).
// Errors as DecodeImageFile (naming the file).
absl::StatusOr<Thumbnail> MakeThumbnail(const std::string& path, int max_side, int quality = 85);

// 8-bit RGB to baseline JPEG (libjpeg-turbo); INTERNAL on an encoder error.
absl::StatusOr<std::string> EncodeJpeg(const RgbImage& img, int quality);

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_THUMBNAIL_H_
