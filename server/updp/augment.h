// Image augmentations for the two stochastic views of UP-DP / Contrastive
// Clustering: random resized crop, horizontal flip, colour jitter, random grayscale.
#ifndef UPDP_SERVER_UPDP_AUGMENT_H_
#define UPDP_SERVER_UPDP_AUGMENT_H_

#include <random>

#include "server/model/image_preprocess.h"

namespace updp::prompt {

struct AugmentOptions {
  double crop_scale_min = 0.2;  // fraction of the area kept by the random resized crop
  double flip_p = 0.5;
  double jitter_p = 0.8;
  double brightness = 0.4, contrast = 0.4, saturation = 0.4, hue = 0.1;
  double grayscale_p = 0.2;
};

// Rotates every pixel's hue by `shift` (a fraction of the colour circle, in [-0.5, 0.5]) as
// torchvision's adjust_hue does on a tensor: RGB -> HSV in float [0, 1], h = (h + shift) mod 1,
// back to RGB, rounded to 8 bits.
void AdjustHue(model::RgbImage& img, double shift);

// Returns an augmented copy of `img`, resized to size x size (Pillow bicubic).
model::RgbImage Augment(const model::RgbImage& img, int size, const AugmentOptions& o,
                        std::mt19937_64& rng);

}  // namespace updp::prompt

#endif  // UPDP_SERVER_UPDP_AUGMENT_H_
