#include "server/updp/augment.h"

#include <algorithm>
#include <cmath>

namespace updp::prompt {
namespace {

double U(std::mt19937_64& rng, double a, double b) {
  return std::uniform_real_distribution<double>(a, b)(rng);
}

uint8_t Clamp(double v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

void Blend(std::vector<uint8_t>& px, const std::vector<double>& other, double f) {
  for (size_t i = 0; i < px.size(); ++i) px[i] = Clamp(f * px[i] + (1 - f) * other[i]);
}

std::vector<double> Gray(const std::vector<uint8_t>& px) {
  std::vector<double> g(px.size());
  for (size_t i = 0; i < px.size(); i += 3) {
    double y = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
    g[i] = g[i + 1] = g[i + 2] = y;
  }
  return g;
}

}  // namespace

void AdjustHue(model::RgbImage& img, double shift) {
  const float s_h = static_cast<float>(shift);
  for (size_t i = 0; i + 2 < img.pixels.size(); i += 3) {
    uint8_t* px = &img.pixels[i];
    // RGB -> HSV, all in [0, 1] (torchvision's _rgb2hsv).
    const float r = px[0] / 255.0f, g = px[1] / 255.0f, b = px[2] / 255.0f;
    const float v = std::max({r, g, b});
    const float delta = v - std::min({r, g, b});
    if (delta == 0.0f) continue;  // grey: saturation 0, a hue shift changes nothing
    const float s = delta / v;
    float h = v == r ? (g - b) / delta : v == g ? 2.0f + (b - r) / delta : 4.0f + (r - g) / delta;
    h = h / 6.0f + s_h;
    h -= std::floor(h);  // modulo 1
    // HSV -> RGB (torchvision's _hsv2rgb); h may round to 1.0, which sector 6 % 6 = 0 handles.
    const float h6 = h * 6.0f;
    const int sector = static_cast<int>(std::floor(h6)) % 6;
    const float f = h6 - std::floor(h6);
    const float p = v * (1.0f - s), q = v * (1.0f - s * f), t = v * (1.0f - s * (1.0f - f));
    const float rgb[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    for (int c = 0; c < 3; ++c) px[c] = Clamp(rgb[sector][c] * 255.0);
  }
}

model::RgbImage Augment(const model::RgbImage& img, int size, const AugmentOptions& o,
                        std::mt19937_64& rng) {
  // Random resized crop (area fraction in [scale_min, 1], aspect ratio in [3/4, 4/3]).
  const int w = img.width, h = img.height;
  int cw = w, ch = h, cx = 0, cy = 0;
  for (int attempt = 0; attempt < 10; ++attempt) {
    double area = w * h * U(rng, o.crop_scale_min, 1.0);
    double ratio = std::exp(U(rng, std::log(3.0 / 4), std::log(4.0 / 3)));
    int tw = static_cast<int>(std::lround(std::sqrt(area * ratio)));
    int th = static_cast<int>(std::lround(std::sqrt(area / ratio)));
    if (tw >= 1 && th >= 1 && tw <= w && th <= h) {
      cw = tw;
      ch = th;
      cx = std::uniform_int_distribution<int>(0, w - tw)(rng);
      cy = std::uniform_int_distribution<int>(0, h - th)(rng);
      break;
    }
  }
  model::RgbImage crop{cw, ch, std::vector<uint8_t>(static_cast<size_t>(cw) * ch * 3)};
  for (int y = 0; y < ch; ++y) {
    std::copy_n(&img.pixels[(static_cast<size_t>(cy + y) * w + cx) * 3], cw * 3,
                &crop.pixels[static_cast<size_t>(y) * cw * 3]);
  }
  model::RgbImage out = model::ResizeBicubicPillow(crop, size, size);
  if (U(rng, 0, 1) < o.flip_p) {
    for (int y = 0; y < size; ++y) {
      uint8_t* row = &out.pixels[static_cast<size_t>(y) * size * 3];
      for (int x = 0; x < size / 2; ++x) {
        for (int c = 0; c < 3; ++c) std::swap(row[x * 3 + c], row[(size - 1 - x) * 3 + c]);
      }
    }
  }
  if (U(rng, 0, 1) < o.jitter_p) {
    // Brightness, contrast, saturation (in a random order), then hue.
    int order[3] = {0, 1, 2};
    std::shuffle(order, order + 3, rng);
    for (int op : order) {
      if (op == 0) {
        double f = U(rng, 1 - o.brightness, 1 + o.brightness);
        Blend(out.pixels, std::vector<double>(out.pixels.size(), 0.0), f);
      } else if (op == 1) {
        double f = U(rng, 1 - o.contrast, 1 + o.contrast);
        auto g = Gray(out.pixels);
        double mean = 0;
        for (size_t i = 0; i < g.size(); i += 3) mean += g[i];
        mean /= std::max<size_t>(1, g.size() / 3);
        Blend(out.pixels, std::vector<double>(out.pixels.size(), mean), f);
      } else {
        double f = U(rng, 1 - o.saturation, 1 + o.saturation);
        Blend(out.pixels, Gray(out.pixels), f);
      }
    }
    double hue = U(rng, -o.hue, o.hue);
    if (hue != 0.0) AdjustHue(out, hue);
  }
  if (U(rng, 0, 1) < o.grayscale_p) {
    auto g = Gray(out.pixels);
    for (size_t i = 0; i < g.size(); ++i) out.pixels[i] = Clamp(g[i]);
  }
  return out;
}

}  // namespace updp::prompt
