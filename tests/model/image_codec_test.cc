// JPEG / PNG / WebP decoding: the images are encoded here with libjpeg-turbo, libpng, libwebp
// and libexif, so the expected pixels are known exactly. Expected values that mirror Pillow
// (CMYK conversion, 16-bit grayscale, EXIF orientation) were checked against Pillow 13.
#include "server/model/image_codec.h"

#include <gtest/gtest.h>

// clang-format off
#include <cstdio>
#include <jpeglib.h>
// clang-format on
#include <libexif/exif-data.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/encode.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "server/util/atomic_file.h"
#include "server/model/image_preprocess.h"

namespace updp::model {
namespace {

using Rgb = std::array<int, 3>;

Rgb PixelAt(const RgbImage& img, int x, int y) {
  const uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * 3];
  return {p[0], p[1], p[2]};
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  EXPECT_TRUE(WriteFileAtomically(path, bytes).ok());
  return path;
}

// Decoding `bytes` saved as `name` fails with a message naming the file and containing `what`,
// and prints nothing.
void ExpectDecodeError(const std::string& name, const std::string& bytes, const std::string& what) {
  const std::string path = WriteTemp(name, bytes);
  ::testing::internal::CaptureStderr();
  absl::StatusOr<RgbImage> img = DecodeImageFile(path);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << name;
  ASSERT_FALSE(img.ok()) << name;
  const std::string msg(img.status().message());
  EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << msg;
}

// ---------------------------------------------------------------------------------------------
// Encoders (default libjpeg error handling: an encoder failure exits the test binary).

struct JpegSpec {
  int width = 0, height = 0;
  int components = 3;
  J_COLOR_SPACE in_space = JCS_RGB;
  J_COLOR_SPACE jpeg_space = JCS_UNKNOWN;  // JCS_UNKNOWN: libjpeg's default for in_space
  std::string pixels;                      // height * width * components
  int quality = 95;
  std::vector<std::string> app1;  // APP1 segment payloads, written in order
};

std::string EncodeJpeg(const JpegSpec& s) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = s.width;
  c.image_height = s.height;
  c.input_components = s.components;
  c.in_color_space = s.in_space;
  jpeg_set_defaults(&c);
  if (s.jpeg_space != JCS_UNKNOWN) jpeg_set_colorspace(&c, s.jpeg_space);
  jpeg_set_quality(&c, s.quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  for (const std::string& m : s.app1) {
    jpeg_write_marker(&c, JPEG_APP0 + 1, reinterpret_cast<const JOCTET*>(m.data()), m.size());
  }
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = reinterpret_cast<JSAMPROW>(const_cast<char*>(
        &s.pixels[static_cast<size_t>(c.next_scanline) * s.width * s.components]));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::string out(reinterpret_cast<char*>(buf), size);
  std::free(buf);
  return out;
}

// An APP1 payload ("Exif\0\0" + TIFF) holding only the IFD0 Orientation tag, built by libexif.
std::string ExifApp1(int orientation, ExifByteOrder order) {
  ExifData* ed = exif_data_new();
  exif_data_set_byte_order(ed, order);
  ExifEntry* e = exif_entry_new();
  exif_content_add_entry(ed->ifd[EXIF_IFD_0], e);
  exif_entry_initialize(e, EXIF_TAG_ORIENTATION);
  exif_set_short(e->data, order, static_cast<ExifShort>(orientation));
  exif_entry_unref(e);
  unsigned char* buf = nullptr;
  unsigned int size = 0;
  exif_data_save_data(ed, &buf, &size);
  std::string out(reinterpret_cast<char*>(buf), size);
  std::free(buf);
  exif_data_unref(ed);
  return out;
}

struct PngSpec {
  int width = 0, height = 0;
  int color_type = PNG_COLOR_TYPE_RGB;
  int bit_depth = 8;
  bool interlaced = false;
  std::vector<png_color> palette;
  std::vector<png_byte> trans;  // tRNS for a palette image
  std::string rows;             // height rows of packed samples (16-bit big-endian)
};

void AppendToString(png_structp png, png_bytep data, size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<char*>(data), n);
}

std::string EncodePng(const PngSpec& s) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    ADD_FAILURE() << "libpng write failed";
    png_destroy_write_struct(&png, &info);
    return "";
  }
  png_set_write_fn(png, &out, AppendToString, nullptr);
  png_set_IHDR(png, info, s.width, s.height, s.bit_depth, s.color_type,
               s.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!s.palette.empty()) {
    png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
  }
  if (!s.trans.empty()) {
    png_set_tRNS(png, info, s.trans.data(), static_cast<int>(s.trans.size()), nullptr);
  }
  png_write_info(png, info);
  const size_t stride = s.rows.size() / s.height;
  std::vector<png_bytep> rows(s.height);
  for (int y = 0; y < s.height; ++y) {
    rows[y] = reinterpret_cast<png_bytep>(const_cast<char*>(&s.rows[y * stride]));
  }
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

std::string Noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

// 32x16 RGB image: red, green (top); blue, white (bottom) 16x8 quadrants.
JpegSpec Quadrants() {
  JpegSpec s;
  s.width = 32;
  s.height = 16;
  s.pixels.resize(32 * 16 * 3);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 32; ++x) {
      const int q = (y >= 8) * 2 + (x >= 16);
      const Rgb colours[4] = {{{255, 0, 0}}, {{0, 255, 0}}, {{0, 0, 255}}, {{255, 255, 255}}};
      for (int c = 0; c < 3; ++c) s.pixels[(y * 32 + x) * 3 + c] = static_cast<char>(colours[q][c]);
    }
  }
  return s;
}

char Colour(const Rgb& p) {
  auto near = [&](int r, int g, int b) {
    return std::abs(p[0] - r) <= 12 && std::abs(p[1] - g) <= 12 && std::abs(p[2] - b) <= 12;
  };
  return near(255, 0, 0)       ? 'R'
         : near(0, 255, 0)     ? 'G'
         : near(0, 0, 255)     ? 'B'
         : near(255, 255, 255) ? 'W'
                               : '?';
}

// Corner colours top-left, top-right, bottom-left, bottom-right.
std::string Corners(const RgbImage& img) {
  const int r = img.width - 1, b = img.height - 1;
  return {Colour(PixelAt(img, 0, 0)), Colour(PixelAt(img, r, 0)), Colour(PixelAt(img, 0, b)),
          Colour(PixelAt(img, r, b))};
}

// ---------------------------------------------------------------------------------------------
// Format detection and errors.

TEST(ImageCodec, DetectsFormatFromMagicBytesNotExtension) {
  EXPECT_EQ(DetectImageFormat("\xFF\xD8\xFF\xE0"), ImageFormat::kJpeg);
  EXPECT_EQ(DetectImageFormat("\x89PNG\r\n\x1A\n...."), ImageFormat::kPng);
  EXPECT_EQ(DetectImageFormat(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)), ImageFormat::kWebp);
  EXPECT_EQ(DetectImageFormat(std::string("RIFF\x10\0\0\0WAVEfmt ", 16)), ImageFormat::kUnknown);
  EXPECT_EQ(DetectImageFormat("BM"), ImageFormat::kUnknown);
  EXPECT_EQ(DetectImageFormat(""), ImageFormat::kUnknown);
  // A PNG named .jpg decodes as PNG.
  PngSpec s{2, 1, PNG_COLOR_TYPE_RGB, 8};
  s.rows = std::string("\x01\x02\x03\x04\x05\x06", 6);
  auto img = DecodeImageFile(WriteTemp("really_png.jpg", EncodePng(s)));
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(PixelAt(*img, 1, 0), (Rgb{4, 5, 6}));
}

TEST(ImageCodec, OtherFormatsAreUnsupportedErrorsNamingTheFile) {
  const std::string unsupported = "unsupported image format (supported: JPEG, PNG, WebP)";
  std::string bmp("BM\x46\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0", 18);
  ExpectDecodeError("header.bmp", bmp + Noise(52, 1), unsupported);
  ExpectDecodeError("header.gif",
                    std::string("GIF89a\x01\x00\x01\x00\x80\x00\x00", 13) + Noise(20, 2),
                    unsupported);
  ExpectDecodeError("header.tif", std::string("II*\0\x08\0\0\0", 8) + Noise(40, 3), unsupported);
  ExpectDecodeError("random.png", "\x01" + Noise(4096, 4), unsupported);
  ExpectDecodeError("empty.jpg", "", "empty file");
}

TEST(ImageCodec, RandomBytesAfterAMagicAreDecodeErrors) {
  ExpectDecodeError("random_after_magic.jpg", "\xFF\xD8\xFF" + Noise(4096, 5),
                    "cannot decode JPEG");
  ExpectDecodeError("random_after_magic.png", "\x89PNG\r\n\x1A\n" + Noise(4096, 6),
                    "cannot decode PNG");
  ExpectDecodeError("random_after_magic.webp",
                    std::string("RIFF\xF8\x0F\0\0WEBP", 12) + Noise(4084, 7), "cannot decode WebP");
}

TEST(ImageCodec, TruncatedJpegIsAnErrorNamingTheFile) {
  JpegSpec s;
  s.width = 64;
  s.height = 48;
  s.pixels = Noise(64 * 48 * 3, 8);
  s.quality = 90;
  const std::string jpeg = EncodeJpeg(s);
  ASSERT_TRUE(DecodeImageBytes(jpeg, "whole.jpg").ok());
  // In the entropy-coded data: libjpeg would pad with grey; Pillow (and we) refuse.
  ExpectDecodeError("truncated_half.jpg", jpeg.substr(0, jpeg.size() / 2), "truncated JPEG");
  ExpectDecodeError("truncated_header.jpg", jpeg.substr(0, 100), "cannot decode JPEG");
  // Only the EOI marker missing: still truncated for Pillow (libjpeg reads ahead of the last
  // scanline and finds no marker).
  ExpectDecodeError("no_eoi.jpg", jpeg.substr(0, jpeg.size() - 2), "truncated JPEG");
}

TEST(ImageCodec, TruncatedPngIsAnErrorNamingTheFile) {
  PngSpec s{64, 48, PNG_COLOR_TYPE_RGB, 8};
  s.rows = Noise(64 * 48 * 3, 9);
  const std::string png = EncodePng(s);
  ExpectDecodeError("truncated_half.png", png.substr(0, png.size() / 2), "truncated PNG");
  ExpectDecodeError("truncated_header.png", png.substr(0, 20), "truncated PNG");
  std::string bad_crc = png;
  bad_crc[png.size() / 2] ^= 0x55;  // inside IDAT
  ExpectDecodeError("corrupt.png", bad_crc, "cannot decode PNG");
}

TEST(ImageCodec, TruncatedWebpIsAnErrorNamingTheFile) {
  const std::string rgb = Noise(64 * 48 * 3, 10);
  uint8_t* out = nullptr;
  const size_t n =
      WebPEncodeRGB(reinterpret_cast<const uint8_t*>(rgb.data()), 64, 48, 64 * 3, 90, &out);
  ASSERT_GT(n, 100u);
  const std::string webp(reinterpret_cast<char*>(out), n);
  WebPFree(out);
  ASSERT_TRUE(DecodeImageBytes(webp, "whole.webp").ok());
  ExpectDecodeError("truncated_half.webp", webp.substr(0, webp.size() / 2), "cannot decode WebP");
  ExpectDecodeError("truncated_header.webp", webp.substr(0, 16), "cannot decode WebP");
}

TEST(ImageCodec, MissingFileAndDirectoryAreErrors) {
  auto missing = DecodeImageFile(::testing::TempDir() + "/no_such_image.png");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_NE(missing.status().message().find("no_such_image.png"), std::string::npos);
  auto dir = DecodeImageFile(::testing::TempDir());
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("not a regular file"), std::string::npos);
}

TEST(ImageCodec, DecompressionBombsAreRefusedBeforeDecoding) {
  // 13400 x 13400 = 179,560,000 pixels > kMaxImagePixels (178,956,970): headers only.
  JpegSpec j;
  j.width = j.height = 16;
  j.pixels = std::string(16 * 16 * 3, '\x80');
  std::string jpeg = EncodeJpeg(j);
  const size_t sof = jpeg.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  jpeg.replace(sof + 5, 4, "\x34\x58\x34\x58");  // height, width (big-endian)
  ExpectDecodeError("bomb.jpg", jpeg, "image too large (13400x13400");

  // PNG: signature + IHDR + the header of the first IDAT chunk, where png_read_info stops.
  std::string png;
  png_structp w = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(w);
  png_set_write_fn(w, &png, AppendToString, nullptr);
  png_set_IHDR(w, info, 13400, 13400, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(w, info);
  png_destroy_write_struct(&w, &info);
  ExpectDecodeError("bomb.png", png + std::string("\0\0\x10\0IDAT", 8),
                    "image too large (13400x13400");

  // WebP lossless: the VP8L header packs width - 1 and height - 1 in 14 bits each.
  const std::string rgb(16 * 16 * 3, '\x40');
  uint8_t* out = nullptr;
  const size_t n =
      WebPEncodeLosslessRGB(reinterpret_cast<const uint8_t*>(rgb.data()), 16, 16, 48, &out);
  std::string webp(reinterpret_cast<char*>(out), n);
  WebPFree(out);
  ASSERT_EQ(webp.substr(12, 4), "VP8L");
  const uint32_t bits = (13399u) | (13399u << 14);  // alpha hint 0, version 0
  for (int i = 0; i < 4; ++i) webp[21 + i] = static_cast<char>((bits >> (8 * i)) & 0xFF);
  ExpectDecodeError("bomb.webp", webp, "image too large (13400x13400");
}

// ---------------------------------------------------------------------------------------------
// JPEG.

TEST(ImageCodec, GrayscaleJpegIsReplicated) {
  JpegSpec s;
  s.width = 24;
  s.height = 16;
  s.components = 1;
  s.in_space = JCS_GRAYSCALE;
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 24; ++x) s.pixels.push_back(static_cast<char>(x * 10 + y));
  }
  auto img = DecodeImageBytes(EncodeJpeg(s), "gray.jpg");
  ASSERT_TRUE(img.ok()) << img.status();
  ASSERT_EQ(img->width, 24);
  ASSERT_EQ(img->height, 16);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 24; ++x) {
      const Rgb p = PixelAt(*img, x, y);
      EXPECT_EQ(p[0], p[1]);
      EXPECT_EQ(p[0], p[2]);
      EXPECT_NEAR(p[0], x * 10 + y, 4);
    }
  }
}

TEST(ImageCodec, CmykAndYcckJpegsConvertLikePillow) {
  // Raw CMYK samples (200, 100, 50, 180), written Adobe-style (libjpeg's default for CMYK).
  // Pillow reads them as inverted CMYK (55, 155, 205, 75) and converts to RGB (141, 71, 35).
  JpegSpec s;
  s.width = s.height = 16;
  s.components = 4;
  s.in_space = JCS_CMYK;
  for (int i = 0; i < 16 * 16; ++i) s.pixels += std::string("\xC8\x64\x32\xB4", 4);
  for (J_COLOR_SPACE space : {JCS_CMYK, JCS_YCCK}) {
    s.jpeg_space = space;
    auto img = DecodeImageBytes(EncodeJpeg(s), "cmyk.jpg");
    ASSERT_TRUE(img.ok()) << img.status();
    EXPECT_EQ(PixelAt(*img, 0, 0), (Rgb{141, 71, 35})) << space;
    EXPECT_EQ(PixelAt(*img, 15, 15), (Rgb{141, 71, 35})) << space;
  }
}

TEST(ImageCodec, ExifOrientationIsAppliedAsPillowExifTranspose) {
  // Corner colours (top-left, top-right, bottom-left, bottom-right) after Pillow's
  // ImageOps.exif_transpose of the quadrant image, for orientations 1..8.
  const char* want[9] = {"", "RGBW", "GRWB", "WBGR", "BWRG", "RBGW", "BRWG", "WGBR", "GWRB"};
  for (int o = 1; o <= 8; ++o) {
    for (ExifByteOrder order : {EXIF_BYTE_ORDER_INTEL, EXIF_BYTE_ORDER_MOTOROLA}) {
      JpegSpec s = Quadrants();
      s.app1 = {ExifApp1(o, order)};
      auto img = DecodeImageBytes(EncodeJpeg(s), "exif.jpg");
      ASSERT_TRUE(img.ok()) << img.status();
      const bool swapped = o >= 5;
      EXPECT_EQ(img->width, swapped ? 16 : 32) << "orientation " << o;
      EXPECT_EQ(img->height, swapped ? 32 : 16) << "orientation " << o;
      EXPECT_EQ(Corners(*img), want[o]) << "orientation " << o << " byte order " << order;
    }
  }
}

TEST(ImageCodec, ExifOrientation6RotatesClockwiseAnd3Rotates180) {
  JpegSpec s = Quadrants();
  s.app1 = {ExifApp1(6, EXIF_BYTE_ORDER_INTEL)};
  auto rot6 = DecodeImageBytes(EncodeJpeg(s), "rot6.jpg");
  ASSERT_TRUE(rot6.ok()) << rot6.status();
  ASSERT_EQ(rot6->width, 16);
  ASSERT_EQ(rot6->height, 32);
  // The red top-left corner of the stored image ends up top-right.
  EXPECT_EQ(Colour(PixelAt(*rot6, 15, 0)), 'R');
  EXPECT_EQ(Colour(PixelAt(*rot6, 0, 0)), 'B');

  s.app1 = {ExifApp1(3, EXIF_BYTE_ORDER_MOTOROLA)};
  auto rot3 = DecodeImageBytes(EncodeJpeg(s), "rot3.jpg");
  ASSERT_TRUE(rot3.ok()) << rot3.status();
  ASSERT_EQ(rot3->width, 32);
  ASSERT_EQ(rot3->height, 16);
  EXPECT_EQ(Colour(PixelAt(*rot3, 31, 15)), 'R');
  // Pixel-exact: 180 degrees is the stored image read backwards.
  s.app1.clear();
  auto plain = DecodeImageBytes(EncodeJpeg(s), "plain.jpg");
  ASSERT_TRUE(plain.ok());
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 32; ++x) ASSERT_EQ(PixelAt(*rot3, x, y), PixelAt(*plain, 31 - x, 15 - y));
  }
}

TEST(ImageCodec, ExifIsReadFromTheFirstExifApp1Only) {
  JpegSpec s = Quadrants();
  // An XMP APP1 first (skipped), then the Exif one; an orientation out of 1..8 is ignored.
  s.app1 = {std::string("http://ns.adobe.com/xap/1.0/\0<x/>", 33),
            ExifApp1(8, EXIF_BYTE_ORDER_INTEL)};
  auto img = DecodeImageBytes(EncodeJpeg(s), "xmp_then_exif.jpg");
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(Corners(*img), "GWRB");
  s.app1 = {ExifApp1(9, EXIF_BYTE_ORDER_INTEL)};
  img = DecodeImageBytes(EncodeJpeg(s), "orientation9.jpg");
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(Corners(*img), "RGBW");
}

// ---------------------------------------------------------------------------------------------
// PNG.

TEST(ImageCodec, PngAlphaIsDroppedWithoutCompositing) {
  PngSpec s{3, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8};
  s.rows = std::string(
      "\x10\x20\x30\x00"
      "\xF0\xE0\xD0\x80"
      "\x01\x02\x03\xFF",
      12);
  auto img = DecodeImageBytes(EncodePng(s), "rgba.png");
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->pixels, (std::vector<uint8_t>{0x10, 0x20, 0x30, 0xF0, 0xE0, 0xD0, 1, 2, 3}));

  PngSpec ga{2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8};
  ga.rows = std::string("\x40\x00\xC0\x7F", 4);
  img = DecodeImageBytes(EncodePng(ga), "gray_alpha.png");
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->pixels, (std::vector<uint8_t>{0x40, 0x40, 0x40, 0xC0, 0xC0, 0xC0}));
}

TEST(ImageCodec, Png16BitKeepsTheHighByte) {
  PngSpec s{2, 1, PNG_COLOR_TYPE_RGB, 16};
  s.rows = std::string(
      "\x12\x34\xAB\xCD\x00\xFF"
      "\xFF\x00\x80\x80\x7F\xFF",
      12);
  auto img = DecodeImageBytes(EncodePng(s), "rgb16.png");
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->pixels, (std::vector<uint8_t>{0x12, 0xAB, 0x00, 0xFF, 0x80, 0x7F}));

  PngSpec rgba{1, 1, PNG_COLOR_TYPE_RGB_ALPHA, 16};
  rgba.rows = std::string("\x12\x34\xAB\xCD\x00\xFF\x00\x00", 8);
  img = DecodeImageBytes(EncodePng(rgba), "rgba16.png");
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->pixels, (std::vector<uint8_t>{0x12, 0xAB, 0x00}));
}

TEST(ImageCodec, Png16BitGrayIsClippedAsPillowConvertsI16) {
  // Pillow opens 16-bit grayscale as mode I;16; convert("RGB") clips at 255 (checked with
  // Pillow 13: 0, 200, 255, 256, 0x1234 -> 0, 200, 255, 255, 255).
  PngSpec s{5, 1, PNG_COLOR_TYPE_GRAY, 16};
  s.rows = std::string("\x00\x00\x00\xC8\x00\xFF\x01\x00\x12\x34", 10);
  auto img = DecodeImageBytes(EncodePng(s), "gray16.png");
  ASSERT_TRUE(img.ok()) << img.status();
  const int want[5] = {0, 200, 255, 255, 255};
  for (int x = 0; x < 5; ++x) EXPECT_EQ(PixelAt(*img, x, 0), (Rgb{want[x], want[x], want[x]}));
}

TEST(ImageCodec, PalettePngIsExpandedAndTrnsIgnored) {
  PngSpec s{4, 1, PNG_COLOR_TYPE_PALETTE, 4};
  s.palette = {{10, 20, 30}, {40, 50, 60}, {70, 80, 90}};
  s.trans = {0, 128};                   // entry 0 transparent, 1 half: ignored by convert("RGB")
  s.rows = std::string("\x21\x00", 2);  // indices 2, 1, 0, 0
  auto img = DecodeImageBytes(EncodePng(s), "palette.png");
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->pixels, (std::vector<uint8_t>{70, 80, 90, 40, 50, 60, 10, 20, 30, 10, 20, 30}));
}

TEST(ImageCodec, LowBitDepthGrayPngIsScaledTo8Bits) {
  struct Case {
    int depth;
    std::string row;
    std::vector<int> want;
  } cases[] = {
      {1, std::string("\xA0", 1), {255, 0, 255, 0}},
      {2, std::string("\x1B", 1), {0, 85, 170, 255}},
      {4, std::string("\x0F\x7A", 2), {0, 255, 119, 170}},
  };
  for (const Case& c : cases) {
    PngSpec s{4, 1, PNG_COLOR_TYPE_GRAY, c.depth};
    s.rows = c.row;
    auto img = DecodeImageBytes(EncodePng(s), "gray_low.png");
    ASSERT_TRUE(img.ok()) << img.status();
    for (int x = 0; x < 4; ++x) {
      EXPECT_EQ(PixelAt(*img, x, 0), (Rgb{c.want[x], c.want[x], c.want[x]})) << c.depth;
    }
  }
}

TEST(ImageCodec, InterlacedPngDecodesLikeNonInterlaced) {
  PngSpec s{13, 11, PNG_COLOR_TYPE_RGB, 8};
  s.rows = Noise(13 * 11 * 3, 11);
  auto plain = DecodeImageBytes(EncodePng(s), "plain.png");
  s.interlaced = true;
  auto adam7 = DecodeImageBytes(EncodePng(s), "adam7.png");
  ASSERT_TRUE(plain.ok() && adam7.ok());
  EXPECT_EQ(adam7->pixels, plain->pixels);
  EXPECT_EQ(std::string(plain->pixels.begin(), plain->pixels.end()), s.rows);
}

TEST(ImageCodec, WriteGrayPngRoundTrips) {
  const std::string gray = Noise(28 * 28, 12);
  const std::string path = ::testing::TempDir() + "/written_gray.png";
  ASSERT_TRUE(WriteGrayPng(path, 28, 28, reinterpret_cast<const uint8_t*>(gray.data())).ok());
  auto img = DecodeImageFile(path);
  ASSERT_TRUE(img.ok()) << img.status();
  ASSERT_EQ(img->width, 28);
  for (int i = 0; i < 28 * 28; ++i) {
    ASSERT_EQ(PixelAt(*img, i % 28, i / 28),
              (Rgb{uint8_t(gray[i]), uint8_t(gray[i]), uint8_t(gray[i])}));
  }
  EXPECT_FALSE(WriteGrayPng(::testing::TempDir() + "/no_such_dir/x.png", 28, 28,
                            reinterpret_cast<const uint8_t*>(gray.data()))
                   .ok());
}

// ---------------------------------------------------------------------------------------------
// WebP.

TEST(ImageCodec, LosslessWebpRoundTripsAndAlphaIsDropped) {
  const std::string rgba = Noise(9 * 7 * 4, 13);
  std::string opaque_alpha = rgba;
  for (size_t i = 3; i < opaque_alpha.size(); i += 4) opaque_alpha[i] = '\x80';
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeLosslessRGBA(reinterpret_cast<const uint8_t*>(opaque_alpha.data()), 9,
                                          7, 9 * 4, &out);
  const std::string webp(reinterpret_cast<char*>(out), n);
  WebPFree(out);
  auto img = DecodeImageBytes(webp, "alpha.webp");
  ASSERT_TRUE(img.ok()) << img.status();
  ASSERT_EQ(img->width, 9);
  ASSERT_EQ(img->height, 7);
  for (int i = 0; i < 9 * 7; ++i) {
    for (int c = 0; c < 3; ++c) ASSERT_EQ(img->pixels[i * 3 + c], uint8_t(rgba[i * 4 + c]));
  }
}

}  // namespace
}  // namespace updp::model
