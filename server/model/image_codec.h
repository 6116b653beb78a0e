// Image codecs used directly, as Pillow uses them: libjpeg-turbo (with the EXIF orientation read
// by libexif), libpng and libwebp. DecodeImageBytes/DecodeImageFile in image_preprocess.h pick
// one of these by magic bytes; the decoders are declared here for tests and tools.
#ifndef UPDP_SERVER_MODEL_IMAGE_CODEC_H_
#define UPDP_SERVER_MODEL_IMAGE_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/model/image_preprocess.h"

namespace updp::model {

// Images with more pixels are refused before decoding (decompression bombs). This is the
// threshold at which Pillow raises DecompressionBombError (2 * Image.MAX_IMAGE_PIXELS).
inline constexpr int64_t kMaxImagePixels = 178956970;

enum class ImageFormat { kUnknown, kJpeg, kPng, kWebp };

// Detects the format from the leading bytes (the file name extension is never used).
ImageFormat DetectImageFormat(std::string_view bytes);

// Each decoder returns 8-bit RGB as Pillow's Image.open(...).convert("RGB") would, or an
// InvalidArgument error whose message starts with `name`. None of them prints anything.
//
// JPEG: libjpeg defaults (JDCT_ISLOW, fancy upsampling); grayscale is replicated; CMYK/YCCK is
// converted as Pillow converts its (Adobe-inverted) CMYK; the EXIF orientation is applied as
// ImageOps.exif_transpose does. A truncated file is an error, as in Pillow (even when only the
// EOI marker is missing: libjpeg reads past the last scanline's data).
absl::StatusOr<RgbImage> DecodeJpeg(std::string_view bytes, const std::string& name);
// PNG: palette expanded, gray of 1/2/4 bits scaled to 8 and replicated, 16-bit channels keep
// their high byte (16-bit grayscale is clipped to 255 instead, as Pillow's I;16 -> RGB is),
// alpha and tRNS dropped without compositing. Only the image data is read (not chunks after it).
absl::StatusOr<RgbImage> DecodePng(std::string_view bytes, const std::string& name);
// WebP (lossy or lossless, still images only): alpha dropped.
absl::StatusOr<RgbImage> DecodeWebp(std::string_view bytes, const std::string& name);

// Writes an 8-bit grayscale PNG (row-major, width * height bytes).
absl::Status WriteGrayPng(const std::string& path, int width, int height, const uint8_t* pixels);

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_IMAGE_CODEC_H_
