#include "server/model/image_codec.h"

// jpeglib.h needs the FILE and size_t of <cstdio> first.
// clang-format off
#include <csetjmp>
#include <cstdio>
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <libexif/exif-data.h>
#include <png.h>
#include <webp/decode.h>

#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace updp::model {
namespace {

absl::Status DecodeError(const std::string& name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
}

absl::Status CheckPixelCount(const std::string& name, uint64_t width, uint64_t height) {
  if (width * height <= static_cast<uint64_t>(kMaxImagePixels)) return absl::OkStatus();
  return DecodeError(name, absl::StrCat("image too large (", width, "x", height, " = ",
                                        width * height, " pixels, limit ", kMaxImagePixels,
                                        "): refusing a possible decompression bomb"));
}

// ---------------------------------------------------------------------------------------------
// EXIF orientation (Pillow's ImageOps.exif_transpose).

// Orientation tag (0x0112) of IFD0 in the first APP1 "Exif" segment (the one Pillow reads);
// 1 (as stored, no transform) when absent or unreadable.
int ExifOrientation(jpeg_saved_marker_ptr markers) {
  for (jpeg_saved_marker_ptr m = markers; m != nullptr; m = m->next) {
    if (m->marker != JPEG_APP0 + 1 || m->data_length < 6 ||
        std::memcmp(m->data, "Exif\0\0", 6) != 0) {
      continue;
    }
    ExifData* ed = exif_data_new();
    if (ed == nullptr) return 1;
    // Read the stored values as they are (no "fixing" of entries to the specification).
    exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
    exif_data_load_data(ed, m->data, m->data_length);
    int orientation = 1;
    ExifEntry* e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (e != nullptr && e->data != nullptr && e->components >= 1) {
      const ExifByteOrder order = exif_data_get_byte_order(ed);
      if (e->format == EXIF_FORMAT_SHORT && e->size >= 2) {
        orientation = exif_get_short(e->data, order);
      } else if (e->format == EXIF_FORMAT_LONG && e->size >= 4) {
        orientation = static_cast<int>(exif_get_long(e->data, order));
      }
    }
    exif_data_unref(ed);
    return orientation;
  }
  return 1;
}

// Pillow's exif_transpose: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE,
// 6 ROTATE_270 (90 degrees clockwise), 7 TRANSVERSE, 8 ROTATE_90 (counter-clockwise). Each is
// out(x, y) = in(sx, sy) with (a, b) = swap ? (y, x) : (x, y), sx = flip_x ? w - 1 - a : a and
// sy = flip_y ? h - 1 - b : b.
RgbImage Orient(RgbImage in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const bool swap = orientation >= 5;
  const bool flip_x = orientation == 2 || orientation == 3 || orientation == 7 || orientation == 8;
  const bool flip_y = orientation == 3 || orientation == 4 || orientation == 6 || orientation == 7;
  const int w = in.width, h = in.height;
  RgbImage out{swap ? h : w, swap ? w : h, std::vector<uint8_t>(in.pixels.size())};
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      const int a = swap ? y : x, b = swap ? x : y;
      const int sx = flip_x ? w - 1 - a : a, sy = flip_y ? h - 1 - b : b;
      std::memcpy(&out.pixels[(static_cast<size_t>(y) * out.width + x) * 3],
                  &in.pixels[(static_cast<size_t>(sy) * w + sx) * 3], 3);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JPEG (libjpeg-turbo).

struct JpegError {
  jpeg_error_mgr mgr;  // first: libjpeg hands back &mgr, which is cast to JpegError*
  std::jmp_buf jump;
  bool hit_eof;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1: corrupt but recoverable data) are ignored, as Pillow ignores them, except
// "premature end of file": libjpeg then pads with grey where Pillow reports a truncated file.
void JpegEmitMessage(j_common_ptr cinfo, int level) {
  if (level < 0) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) err->hit_eof = true;
    ++cinfo->err->num_warnings;
  }
}

void JpegOutputMessage(j_common_ptr) {}  // never print to stderr

// Pillow opens 4-component JPEGs as Adobe-style inverted CMYK (rawmode "CMYK;I") and converts
// to RGB with r = (255 - k) - (255 - k) * c / 255 (its cmyk2rgb, MULDIV255 rounding); with the
// inversion undone that is r = K - K * (255 - C) / 255 on libjpeg's raw output.
void InvertedCmykToRgb(const uint8_t* cmyk, int width, uint8_t* rgb) {
  for (int x = 0; x < width; ++x, cmyk += 4, rgb += 3) {
    const int nk = cmyk[3];
    for (int c = 0; c < 3; ++c) {
      const int t = (255 - cmyk[c]) * nk + 128;
      rgb[c] = static_cast<uint8_t>(nk - (((t >> 8) + t) >> 8));
    }
  }
}

// Everything a JPEG decode owns that must survive a longjmp lives here, outside RunJpeg's frame.
struct JpegJob {
  jpeg_decompress_struct cinfo{};  // here, not in RunJpeg's frame: valid after a longjmp
  std::string_view bytes;
  RgbImage* out = nullptr;
  std::vector<uint8_t>* cmyk_row = nullptr;
  JpegError err;
  int orientation = 1;
  absl::Status status;  // set for errors found by us rather than by libjpeg
};

// Only trivially destructible locals live in this frame, so the longjmp from JpegErrorExit back
// to the setjmp skips no destructor. Returns false on a libjpeg error (message in job->err).
bool RunJpeg(JpegJob* job, const std::string& name) {
  jpeg_decompress_struct& cinfo = job->cinfo;
  cinfo.err = jpeg_std_error(&job->err.mgr);
  job->err.mgr.error_exit = JpegErrorExit;
  job->err.mgr.emit_message = JpegEmitMessage;
  job->err.mgr.output_message = JpegOutputMessage;
  job->err.hit_eof = false;
  job->err.message[0] = '\0';
  if (setjmp(job->err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(job->bytes.data()),
               static_cast<unsigned long>(job->bytes.size()));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  job->status = CheckPixelCount(name, cinfo.image_width, cinfo.image_height);
  if (!job->status.ok()) {
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  job->orientation = ExifOrientation(cinfo.marker_list);
  // Defaults otherwise (JDCT_ISLOW, fancy upsampling), as Pillow decodes.
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const int w = static_cast<int>(cinfo.output_width);
  const int h = static_cast<int>(cinfo.output_height);
  job->out->width = w;
  job->out->height = h;
  job->out->pixels.resize(static_cast<size_t>(w) * h * 3);
  if (cmyk) job->cmyk_row->resize(static_cast<size_t>(w) * 4);
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* dst = &job->out->pixels[static_cast<size_t>(cinfo.output_scanline) * w * 3];
    JSAMPROW row = cmyk ? job->cmyk_row->data() : dst;
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (cmyk) InvertedCmykToRgb(job->cmyk_row->data(), w, dst);
  }
  if (job->err.hit_eof) {
    job->status = DecodeError(name, "truncated JPEG (premature end of data)");
  }
  // No jpeg_finish_decompress: nothing after the last scanline is needed.
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// ---------------------------------------------------------------------------------------------
// PNG (libpng).

struct PngJob {
  std::string_view bytes;
  size_t pos = 0;
  RgbImage* out = nullptr;
  std::vector<uint8_t>* gray16 = nullptr;  // 16-bit grayscale rows, converted after decoding
  std::vector<png_bytep>* rows = nullptr;
  char message[200];
  absl::Status status;
};

[[noreturn]] void PngError(png_structp png, png_const_charp msg) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof(job->message), "%s", msg);
  png_longjmp(png, 1);
}

void PngWarning(png_structp, png_const_charp) {}  // never print to stderr

void PngRead(png_structp png, png_bytep data, size_t n) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (job->bytes.size() - job->pos < n) png_error(png, "truncated PNG (premature end of data)");
  std::memcpy(data, job->bytes.data() + job->pos, n);
  job->pos += n;
}

// As RunJpeg: only trivially destructible locals; false on a libpng error (job->message).
bool RunPng(PngJob* job, const std::string& name) {
  job->message[0] = '\0';
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, PngError, PngWarning);
  png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(job->message, sizeof(job->message), "out of memory");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, job, PngRead);
  png_read_info(png, info);
  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, nullptr, nullptr, nullptr);
  job->status = CheckPixelCount(name, w, h);
  if (!job->status.ok()) {
    png_destroy_read_struct(&png, &info, nullptr);
    return true;
  }
  // Pillow opens 16-bit grayscale as mode I;16, whose convert("RGB") clips values to 255
  // (rather than keeping the high byte as for its other 16-bit modes): read it as is.
  const bool gray16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16 && !gray16) png_set_strip_16(png);  // high byte, as Pillow's ;16B unpackers
  png_set_strip_alpha(png);  // also drops tRNS expanded from a palette: no compositing
  if (!gray16 && (color & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t stride = static_cast<size_t>(w) * (gray16 ? 2 : 3);
  if (png_get_rowbytes(png, info) != stride) png_error(png, "unexpected row layout");
  job->out->width = static_cast<int>(w);
  job->out->height = static_cast<int>(h);
  job->out->pixels.resize(static_cast<size_t>(w) * h * 3);
  uint8_t* base = job->out->pixels.data();
  if (gray16) {
    job->gray16->resize(stride * h);
    base = job->gray16->data();
  }
  job->rows->resize(h);
  for (png_uint_32 y = 0; y < h; ++y) (*job->rows)[y] = base + y * stride;
  png_read_image(png, job->rows->data());
  // Chunks after the image data are not read: a missing IEND is accepted, as Pillow does.
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

}  // namespace

ImageFormat DetectImageFormat(std::string_view b) {
  if (b.size() >= 3 && b.substr(0, 3) == "\xFF\xD8\xFF") return ImageFormat::kJpeg;
  if (b.size() >= 8 && b.substr(0, 8) == "\x89PNG\r\n\x1A\n") return ImageFormat::kPng;
  if (b.size() >= 12 && b.substr(0, 4) == "RIFF" && b.substr(8, 4) == "WEBP") {
    return ImageFormat::kWebp;
  }
  return ImageFormat::kUnknown;
}

absl::StatusOr<RgbImage> DecodeJpeg(std::string_view bytes, const std::string& name) {
  RgbImage img;
  std::vector<uint8_t> cmyk_row;
  JpegJob job;
  job.bytes = bytes;
  job.out = &img;
  job.cmyk_row = &cmyk_row;
  if (!RunJpeg(&job, name)) {
    return DecodeError(name, absl::StrCat("cannot decode JPEG: ", job.err.message));
  }
  if (!job.status.ok()) return job.status;
  return Orient(std::move(img), job.orientation);
}

absl::StatusOr<RgbImage> DecodePng(std::string_view bytes, const std::string& name) {
  RgbImage img;
  std::vector<uint8_t> gray16;
  std::vector<png_bytep> rows;
  PngJob job;
  job.bytes = bytes;
  job.out = &img;
  job.gray16 = &gray16;
  job.rows = &rows;
  if (!RunPng(&job, name)) {
    return DecodeError(name, absl::StrCat("cannot decode PNG: ", job.message));
  }
  if (!job.status.ok()) return job.status;
  for (size_t i = 0; i * 2 < gray16.size(); ++i) {
    const uint8_t v = gray16[2 * i] == 0 ? gray16[2 * i + 1] : 255;  // big-endian samples
    img.pixels[3 * i] = img.pixels[3 * i + 1] = img.pixels[3 * i + 2] = v;
  }
  return img;
}

absl::StatusOr<RgbImage> DecodeWebp(std::string_view bytes, const std::string& name) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures f;
  if (WebPGetFeatures(data, bytes.size(), &f) != VP8_STATUS_OK) {
    return DecodeError(name, "cannot decode WebP: invalid or truncated header");
  }
  if (f.has_animation) return DecodeError(name, "animated WebP is not supported");
  if (absl::Status s = CheckPixelCount(name, f.width, f.height); !s.ok()) return s;
  RgbImage img{f.width, f.height,
               std::vector<uint8_t>(static_cast<size_t>(f.width) * f.height * 3)};
  if (WebPDecodeRGBInto(data, bytes.size(), img.pixels.data(), img.pixels.size(), f.width * 3) ==
      nullptr) {
    return DecodeError(name, "cannot decode WebP: corrupt or truncated data");
  }
  return img;
}

absl::Status WriteGrayPng(const std::string& path, int width, int height, const uint8_t* pixels) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_GRAY;
  if (!png_image_write_to_file(&image, path.c_str(), 0, pixels, 0, nullptr)) {
    absl::Status s = absl::InternalError(absl::StrCat(path, ": cannot write PNG: ", image.message));
    png_image_free(&image);
    return s;
  }
  return absl::OkStatus();
}

}  // namespace updp::model
