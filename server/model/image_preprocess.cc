#include "server/model/image_preprocess.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/model/image_codec.h"

namespace updp::model {
namespace {

absl::Status FileError(const std::string& path, const char* what, int err) {
  std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  return err == ENOENT ? absl::NotFoundError(msg) : absl::InvalidArgumentError(msg);
}

// Plain POSIX reads: no exceptions, and a directory or a short read is an error naming the file.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(path, "cannot open", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return FileError(path, "cannot stat", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  // An image file larger than this is not a photo (a video or an archive named .jpg):
  // refuse it before allocating its size.
  constexpr int64_t kMaxImageFileBytes = int64_t{256} << 20;
  if (st.st_size > kMaxImageFileBytes) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": file of ", st.st_size,
                                                   " bytes is larger than the 256 MiB limit for an image"));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      return FileError(path, "read failed", err);
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return bytes;
}

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's fixed-point precision

double BicubicFilter(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;    // per output: xmin, count
  std::vector<int32_t> k;     // per output: ksize fixed-point weights
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full input range.
Coeffs Precompute(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(2 * out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = BicubicFilter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits)
                                     : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

inline uint8_t Clip8(int64_t ss) {
  int64_t v = ss >> kPrecisionBits;
  return static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
}

RgbImage Horizontal(const RgbImage& in, int out_w) {
  Coeffs c = Precompute(in.width, out_w);
  RgbImage out{out_w, in.height, std::vector<uint8_t>(static_cast<size_t>(out_w) * in.height * 3)};
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* row = &in.pixels[static_cast<size_t>(y) * in.width * 3];
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[2 * xx], n = c.bounds[2 * xx + 1];
      const int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
      for (int ch = 0; ch < 3; ++ch) {
        int64_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < n; ++x) ss += static_cast<int64_t>(row[(x + xmin) * 3 + ch]) * k[x];
        out.pixels[(static_cast<size_t>(y) * out_w + xx) * 3 + ch] = Clip8(ss);
      }
    }
  }
  return out;
}

RgbImage Vertical(const RgbImage& in, int out_h) {
  Coeffs c = Precompute(in.height, out_h);
  RgbImage out{in.width, out_h, std::vector<uint8_t>(static_cast<size_t>(in.width) * out_h * 3)};
  const size_t stride = static_cast<size_t>(in.width) * 3;
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[2 * yy], n = c.bounds[2 * yy + 1];
    const int32_t* k = &c.k[static_cast<size_t>(yy) * c.ksize];
    for (size_t i = 0; i < stride; ++i) {
      int64_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < n; ++y) ss += static_cast<int64_t>(in.pixels[(y + ymin) * stride + i]) * k[y];
      out.pixels[yy * stride + i] = Clip8(ss);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<RgbImage> DecodeImageFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  return DecodeImageBytes(*bytes, path);
}

absl::StatusOr<RgbImage> DecodeImageBytes(const std::string& bytes, const std::string& name) {
  switch (DetectImageFormat(bytes)) {
    case ImageFormat::kJpeg:
      return DecodeJpeg(bytes, name);
    case ImageFormat::kPng:
      return DecodePng(bytes, name);
    case ImageFormat::kWebp:
      return DecodeWebp(bytes, name);
    case ImageFormat::kUnknown:
      break;
  }
  if (bytes.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": empty file"));
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": unsupported image format (supported: JPEG, PNG, WebP)"));
}

RgbImage ResizeBicubicPillow(const RgbImage& in, int out_width, int out_height) {
  RgbImage cur = in;
  if (out_width != cur.width) cur = Horizontal(cur, out_width);
  if (out_height != cur.height) cur = Vertical(cur, out_height);
  return cur;
}

std::vector<float> PreprocessForBlip2(const RgbImage& img, int size, const Normalization& norm) {
  RgbImage r = ResizeBicubicPillow(img, size, size);
  const size_t plane = static_cast<size_t>(size) * size;
  std::vector<float> out(3 * plane);
  for (size_t i = 0; i < plane; ++i) {
    for (int ch = 0; ch < 3; ++ch) {
      // Scale in double, then normalise in float, as the reference processor does.
      float scaled = static_cast<float>(r.pixels[i * 3 + ch] * (1.0 / 255.0));
      out[ch * plane + i] = (scaled - norm.mean[ch]) / norm.std[ch];
    }
  }
  return out;
}

}  // namespace updp::model
