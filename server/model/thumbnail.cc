#include "server/model/thumbnail.h"

// jpeglib.h needs the FILE and size_t of <cstdio> first.
// clang-format off
#include <csetjmp>
#include <cstdio>
#include <jpeglib.h>
// clang-format on

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace updp::model {
namespace {

struct EncodeError {
  jpeg_error_mgr mgr;  // first: libjpeg hands back &mgr
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void EncodeErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<EncodeError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void Silent(j_common_ptr) {}

// What survives the longjmp lives outside RunEncode's frame.
struct EncodeJob {
  jpeg_compress_struct cinfo{};
  EncodeError err;
  unsigned char* buf = nullptr;
  unsigned long size = 0;  // NOLINT(runtime/int): libjpeg's type
};

// Only trivially destructible locals here (the longjmp skips no destructor).
bool RunEncode(EncodeJob* job, const RgbImage& img, int quality) {
  jpeg_compress_struct& cinfo = job->cinfo;
  cinfo.err = jpeg_std_error(&job->err.mgr);
  job->err.mgr.error_exit = EncodeErrorExit;
  job->err.mgr.output_message = Silent;
  job->err.message[0] = '\0';
  if (setjmp(job->err.jump)) return false;
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &job->buf, &job->size);
  cinfo.image_width = static_cast<JDIMENSION>(img.width);
  cinfo.image_height = static_cast<JDIMENSION>(img.height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row =
        const_cast<JSAMPROW>(&img.pixels[static_cast<size_t>(cinfo.next_scanline) * img.width * 3]);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  return true;
}

}  // namespace

absl::StatusOr<std::string> EncodeJpeg(const RgbImage& img, int quality) {
  if (img.width <= 0 || img.height <= 0 ||
      img.pixels.size() != static_cast<size_t>(img.width) * img.height * 3) {
    return absl::InvalidArgumentError("image: empty or inconsistent size");
  }
  EncodeJob job;
  const bool ok = RunEncode(&job, img, std::clamp(quality, 1, 100));
  std::string out;
  if (ok) out.assign(reinterpret_cast<const char*>(job.buf), job.size);
  jpeg_destroy_compress(&job.cinfo);
  std::free(job.buf);  // jpeg_mem_dest's buffer (malloc'ed by libjpeg)
  if (!ok) return absl::InternalError(absl::StrCat("jpeg encoder: ", job.err.message));
  return out;
}

absl::StatusOr<Thumbnail> MakeThumbnail(const std::string& path, int max_side, int quality) {
  auto img = DecodeImageFile(path);
  if (!img.ok()) return img.status();
  max_side = std::max(1, max_side);
  const int longest = std::max(img->width, img->height);
  RgbImage small;
  if (longest > max_side) {
    const double f = static_cast<double>(max_side) / longest;
    const int w = std::max(1, static_cast<int>(img->width * f + 0.5));
    const int h = std::max(1, static_cast<int>(img->height * f + 0.5));
    small = ResizeBicubicPillow(*img, std::min(w, max_side), std::min(h, max_side));
  } else {
    small = std::move(*img);
  }
  auto jpeg = EncodeJpeg(small, quality);
  if (!jpeg.ok()) return jpeg.status();
  return Thumbnail{std::move(*jpeg), small.width, small.height};
}

}  // namespace updp::model
