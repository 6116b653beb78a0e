// ActiveFT: B parameter vectors in feature space optimised (Adam) so that they match
// the data distribution and stay diverse; each then takes its nearest distinct row.
#ifndef UPDP_SERVER_SELECT_ACTIVEFT_H_
#define UPDP_SERVER_SELECT_ACTIVEFT_H_

#include <torch/torch.h>

#include <vector>

#include "server/select/strategy.h"

namespace updp::select {

struct ActiveFtParameters {
  double tau = 0.07;
  double lr = 1e-3;
  int steps = 300;
  // Rows per optimisation step: a fresh random mini-batch each step when N is larger
  // (the paper optimises on all rows on a GPU). Cost: steps * batch * B * D
  // multiply-adds for the similarities, plus one N * B * D pass for the final match.
  int64_t batch = 4096;
};

// The loss of one step and its gradient with respect to theta [B, D] (unnormalised
// parameters) for the rows `x` [b, D] (unit norm). Only each row's most similar
// parameter receives gradient, so the gradient is a scatter of b rows instead of a
// second [b, B] x [B, D] product (the denominators' parameter terms are constants, as
// in the reference implementation's detached similarity matrix).
std::pair<double, torch::Tensor> ActiveFtLossAndGrad(const torch::Tensor& theta,
                                                     const torch::Tensor& x, double tau);

// Memory: B * D parameters, one mini-batch ([batch, D] rows and [batch, B] similarities).
std::vector<Pick> RunActiveFt(const StrategyContext& ctx);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_ACTIVEFT_H_
