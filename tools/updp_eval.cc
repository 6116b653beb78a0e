// updp-eval: the evaluation protocol of the field. For each strategy x budget x seed,
// select from the train split without labels, reveal the picks' labels, fit a linear
// probe (multinomial logistic regression) on the picks only, report test accuracy
// (mean +- std over seeds) as a Markdown table and CSV.
//
// --external_picks FILE adds picks made elsewhere (e.g. scikit-learn's k-means,
// bench/sklearn_kmeans_picks.py), scored by the same probe. The --kmeans_* flags set the
// clustering of kmeans, typiclust, usl and probcover (e.g. --kmeans_full_max_work 0: the
// sampled mode).
//
// Features come from one of:
//   --train_features F.npy --train_labels L.npy --test_features F.npy --test_labels L.npy
//       [--select_features F.npy]   (train features the "updp" strategy selects on)
//   --fashion_mnist --features pca  label-free PCA of Debian's Fashion-MNIST pixels
//   --fashion_mnist --model_dir DIR BLIP-2 image features of Fashion-MNIST; a UP-DP prompt
//       is learned on the train images (no labels) and "updp" selects on its prompted
//       features. With the real Salesforce/blip2-itm-vit-g this is the decisive run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/model/blip2_model.h"
#include "server/model/encoder.h"
#include "server/model/image_preprocess.h"
#include "server/model/npy.h"
#include "server/model/tokenizer.h"
#include "server/select/select.h"
#include "server/updp/augment.h"
#include "server/updp/prompt_learner.h"
#include "tools/fmnist_lib.h"
#include "server/util/flags_help.h"
#include "server/util/openmp_env.h"

ABSL_FLAG(std::string, train_features, "", ".npy [N,D] float32/float16");
ABSL_FLAG(std::string, train_labels, "", ".npy [N] int64");
ABSL_FLAG(std::string, test_features, "", ".npy [M,D]");
ABSL_FLAG(std::string, test_labels, "", ".npy [M] int64");
ABSL_FLAG(std::string, select_features, "", "optional .npy [N,D'] the updp strategy selects on");
ABSL_FLAG(bool, fashion_mnist, false, "build features from Debian's dataset-fashion-mnist");
ABSL_FLAG(std::string, features, "pca", "with --fashion_mnist and no --model_dir: pca | pixels");
ABSL_FLAG(int, pca_dim, 64, "PCA dimension");
ABSL_FLAG(std::string, model_dir, "", "BLIP-2 checkpoint for image and UP-DP features");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda[:N]");
ABSL_FLAG(int, train_limit, 60000, "Fashion-MNIST train images used");
ABSL_FLAG(int, test_limit, 10000, "Fashion-MNIST test images used");
ABSL_FLAG(int, prompt_epochs, 10, "UP-DP epochs (--model_dir)");
ABSL_FLAG(int, prompt_train_items, 5000, "UP-DP training subset (--model_dir)");
ABSL_FLAG(int, prompt_clusters, 10, "UP-DP cluster-head size K (--model_dir)");
ABSL_FLAG(std::vector<std::string>, strategies,
          (std::vector<std::string>{"random", "kmeans", "kcenter", "typiclust", "usl", "activeft",
                                    "probcover"}),
          "strategies (add updp when --select_features or --model_dir)");
ABSL_FLAG(std::vector<std::string>, budgets,
          (std::vector<std::string>{"10", "20", "50", "100", "200"}), "budgets");
ABSL_FLAG(int, seeds, 3, "seeds per cell");
ABSL_FLAG(double, probcover_purity, 0.95, "ProbCover purity target for choosing delta");
ABSL_FLAG(int, probcover_clusters, 0, "ProbCover pseudo-label clusters (0 = budget)");
ABSL_FLAG(std::string, csv, "", "write per-run rows here");
ABSL_FLAG(std::string, save_features, "", "folder to save the computed features as .npy");
ABSL_FLAG(std::string, external_picks, "",
          "CSV of picks made elsewhere, rows name,budget,seed,index (index: a train row; a "
          "header line is skipped): each name is scored as a strategy with the same probe");
ABSL_FLAG(std::string, name_suffix, "",
          "appended to the built-in strategies' names in the table and CSV (e.g. -sampled)");
ABSL_FLAG(double, kmeans_full_max_work, updp::select::KMeansParameters().full_max_work,
          "k-means runs on every row to convergence when N*K*D <= this (0: always the sampled "
          "mode)");
ABSL_FLAG(double, kmeans_tolerance, updp::select::KMeansParameters().tolerance,
          "full mode: stop when the relative change of the inertia is below this");
ABSL_FLAG(int, kmeans_max_iterations, updp::select::KMeansParameters().max_iterations,
          "full mode: iteration cap");
ABSL_FLAG(int64_t, kmeans_full_init_max_points, updp::select::KMeansParameters().full_init_max_points,
          "full mode: rows the k-means++ seeding samples");
ABSL_FLAG(bool, kmeans_report, false,
          "for each budget and seed also train k-means (B clusters, the --kmeans_* settings) "
          "on the selection features and print its inertia and iterations to stderr");
ABSL_FLAG(int, kmeans_init_points_per_centroid,
          updp::select::KMeansParameters().init_points_per_centroid,
          "sampled mode: k-means++ seeding sample per centroid");

namespace {

using updp::model::MapNpy;
namespace F = torch::nn::functional;

[[noreturn]] void Die(const std::string& m) {
  std::cerr << "updp-eval: " << m << "\n";
  std::exit(1);
}

torch::Tensor Load(const std::string& path, torch::ScalarType t) {
  auto x = MapNpy(path);
  if (!x.ok()) Die(std::string(x.status().message()));
  return x->to(t).clone();
}

torch::Tensor Normalize(const torch::Tensor& x) { return F::normalize(x, F::NormalizeFuncOptions().dim(1)); }

// Picks keyed by (budget, seed), per external strategy name in file order.
struct ExternalPicks {
  std::vector<std::string> names;
  std::map<std::string, std::map<std::pair<int64_t, int>, std::vector<int64_t>>> picks;
};

absl::StatusOr<ExternalPicks> ReadExternalPicks(const std::string& path, int64_t rows) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(path + ": cannot open");
  ExternalPicks out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string where = absl::StrFormat("%s:%d: ", path, n);
    line = std::string(absl::StripAsciiWhitespace(line));
    if (line.empty() || (n == 1 && absl::StartsWith(line, "name,"))) continue;
    std::vector<std::string> f = absl::StrSplit(line, ',');
    int64_t budget, index;
    int seed;
    if (f.size() != 4 || f[0].empty() || !absl::SimpleAtoi(f[1], &budget) ||
        !absl::SimpleAtoi(f[2], &seed) || !absl::SimpleAtoi(f[3], &index)) {
      return absl::InvalidArgumentError(where + "expected name,budget,seed,index");
    }
    if (index < 0 || index >= rows) {
      return absl::InvalidArgumentError(where + absl::StrFormat("index %d outside the %d train rows", index, rows));
    }
    if (!out.picks.count(f[0])) out.names.push_back(f[0]);
    out.picks[f[0]][{budget, seed}].push_back(index);
  }
  for (auto& [name, cells] : out.picks) {
    for (auto& [key, idx] : cells) {
      std::vector<int64_t> sorted = idx;
      std::sort(sorted.begin(), sorted.end());
      if (static_cast<int64_t>(idx.size()) != key.first ||
          std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: %s budget %d seed %d: %d picks, expected %d distinct rows", path, name, key.first,
            key.second, idx.size(), key.first));
      }
    }
  }
  return out;
}

// Multinomial logistic regression on the picks: full-batch L-BFGS with a small L2.
double ProbeAccuracy(const torch::Tensor& xtr, const torch::Tensor& ytr, const torch::Tensor& xte,
                     const torch::Tensor& yte, int64_t classes) {
  torch::manual_seed(0);
  const int64_t d = xtr.size(1);
  torch::Tensor w = torch::zeros({classes, d}, torch::requires_grad());
  torch::Tensor b = torch::zeros({classes}, torch::requires_grad());
  torch::optim::LBFGS opt({w, b}, torch::optim::LBFGSOptions(1.0).max_iter(200).line_search_fn("strong_wolfe"));
  auto closure = [&]() -> torch::Tensor {
    opt.zero_grad();
    torch::Tensor loss = F::cross_entropy(torch::linear(xtr, w, b), ytr) + 1e-3 * w.pow(2).sum();
    loss.backward();
    return loss;
  };
  opt.step(closure);
  torch::NoGradGuard g;
  torch::Tensor pred = torch::linear(xte, w, b).argmax(1);
  return pred.eq(yte).to(torch::kFloat64).mean().item<double>();
}

// Label-free PCA (fitted on the train split only).
std::pair<torch::Tensor, torch::Tensor> Pca(const torch::Tensor& tr, const torch::Tensor& te, int k) {
  torch::Tensor mean = tr.mean(0, true);
  torch::Tensor cov = torch::mm((tr - mean).t(), tr - mean) / tr.size(0);
  auto eig = torch::linalg_eigh(cov);
  torch::Tensor v = std::get<1>(eig).narrow(1, cov.size(0) - k, k);  // top-k eigenvectors
  return {torch::mm(tr - mean, v), torch::mm(te - mean, v)};
}

torch::Tensor Pixels(const updp::tools::FashionMnist& d, int limit) {
  const int64_t n = std::min<int64_t>(limit, d.labels.size());
  return torch::from_blob(const_cast<uint8_t*>(d.pixels.data()), {n, d.rows * d.cols}, torch::kUInt8)
      .to(torch::kFloat32) / 255.0;
}

// BLIP-2 features of Fashion-MNIST (images through the same preprocessing as the
// service), and UP-DP prompted features after prompt learning on the train images.
struct ModelFeatures {
  torch::Tensor train_image, test_image, train_prompt;
};

updp::model::RgbImage ToRgb(const updp::tools::FashionMnist& d, int i) {
  updp::model::RgbImage img{d.cols, d.rows, std::vector<uint8_t>(d.rows * d.cols * 3)};
  for (int p = 0; p < d.rows * d.cols; ++p) {
    for (int c = 0; c < 3; ++c) img.pixels[p * 3 + c] = d.pixels[static_cast<size_t>(i) * d.rows * d.cols + p];
  }
  return img;
}

ModelFeatures ComputeModelFeatures(const updp::tools::FashionMnist& tr, const updp::tools::FashionMnist& te,
                                   int ntr, int nte) {
  auto device = updp::model::ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) Die(std::string(device.status().message()));
  auto dtype = updp::model::ParseVisionDtype("auto", *device);
  auto m = updp::model::Blip2Model::Load(absl::GetFlag(FLAGS_model_dir), {*device, *dtype});
  if (!m.ok()) Die(std::string(m.status().message()));
  auto tok = updp::model::BertTokenizer::FromVocabFile(absl::GetFlag(FLAGS_model_dir) + "/vocab.txt");
  if (!tok.ok()) Die(std::string(tok.status().message()));
  const auto& model = **m;
  const int size = model.config().vision.image_size;
  auto pixels = [&](const updp::tools::FashionMnist& d, int begin, int end) {
    torch::Tensor px = torch::empty({end - begin, 3, size, size});
    for (int i = begin; i < end; ++i) {
      auto f = updp::model::PreprocessForBlip2(ToRgb(d, i), size);
      px[i - begin].copy_(torch::from_blob(f.data(), {3, size, size}));
    }
    return px;
  };
  auto image_features = [&](const updp::tools::FashionMnist& d, int n) {
    std::vector<torch::Tensor> out;
    torch::InferenceMode g;
    for (int b = 0; b < n; b += 64) {
      out.push_back(model.ImageFeature(model.EncodeImage(pixels(d, b, std::min(n, b + 64)))).to(torch::kCPU));
    }
    return torch::cat(out, 0);
  };
  ModelFeatures f;
  std::cerr << "updp-eval: BLIP-2 image features of " << ntr << " + " << nte << " images\n";
  f.train_image = image_features(tr, ntr);
  f.test_image = image_features(te, nte);

  // UP-DP: cache 2 augmented ViT views of a training subset, learn the prompt.
  updp::prompt::PromptConfig cfg;
  cfg.num_clusters = absl::GetFlag(FLAGS_prompt_clusters);
  cfg.epochs = absl::GetFlag(FLAGS_prompt_epochs);
  cfg.batch_size = 256;
  const int nsub = std::min(ntr, absl::GetFlag(FLAGS_prompt_train_items));
  std::cerr << "updp-eval: caching ViT views of " << nsub << " images\n";
  std::vector<torch::Tensor> views;
  {
    torch::InferenceMode g;
    for (int i = 0; i < nsub; ++i) {
      std::mt19937_64 rng(i);
      torch::Tensor px = torch::empty({2, 3, size, size});
      auto img = ToRgb(tr, i);
      for (int v = 0; v < 2; ++v) {
        auto a = updp::model::PreprocessForBlip2(updp::prompt::Augment(img, size, {}, rng), size);
        px[v].copy_(torch::from_blob(a.data(), {3, size, size}));
      }
      views.push_back(model.EncodeImage(px).to(torch::kBFloat16).unsqueeze(0));
    }
  }
  torch::Tensor cache = torch::cat(views, 0);
  updp::prompt::PromptTrainer trainer(model, updp::prompt::PromptModule::Create(model, *tok, cfg), cfg);
  for (int e = 0; e < cfg.epochs; ++e) {
    auto st = trainer.RunEpoch(cache, nullptr, nullptr);
    std::cerr << absl::StrFormat("updp-eval: epoch %d loss %.4f (instance %.4f cluster %.4f) usage entropy %.3f\n",
                                 st->epoch, st->loss, st->instance_loss, st->cluster_loss, st->usage_entropy);
  }
  std::vector<torch::Tensor> joint;
  {
    torch::InferenceMode g;
    for (int b = 0; b < ntr; b += 64) {
      torch::Tensor vit = model.EncodeImage(pixels(tr, b, std::min(ntr, b + 64)));
      joint.push_back(trainer.module().JointFeatures(model, vit).to(torch::kCPU));
    }
  }
  f.train_prompt = torch::cat(joint, 0);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  updp::PreferPassiveOpenMp(argv);  // before any OpenMP work; see openmp_env.h
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  torch::Tensor xtr, ytr, xte, yte, xsel;
  std::string source;
  if (absl::GetFlag(FLAGS_fashion_mnist)) {
    auto tr = updp::tools::LoadFashionMnist("train");
    auto te = updp::tools::LoadFashionMnist("test");
    if (!tr.ok() || !te.ok()) Die("dataset-fashion-mnist is not installed");
    const int ntr = std::min<int>(absl::GetFlag(FLAGS_train_limit), tr->labels.size());
    const int nte = std::min<int>(absl::GetFlag(FLAGS_test_limit), te->labels.size());
    ytr = torch::tensor(std::vector<int64_t>(tr->labels.begin(), tr->labels.begin() + ntr));
    yte = torch::tensor(std::vector<int64_t>(te->labels.begin(), te->labels.begin() + nte));
    if (!absl::GetFlag(FLAGS_model_dir).empty()) {
      ModelFeatures f = ComputeModelFeatures(*tr, *te, ntr, nte);
      xtr = f.train_image;
      xte = f.test_image;
      xsel = f.train_prompt;
      source = "BLIP-2 image features (" + absl::GetFlag(FLAGS_model_dir) + "); updp selects on prompted joint features";
    } else if (absl::GetFlag(FLAGS_features) == "pixels") {
      xtr = Pixels(*tr, ntr);
      xte = Pixels(*te, nte);
      source = "raw pixels";
    } else {
      std::tie(xtr, xte) = Pca(Pixels(*tr, ntr), Pixels(*te, nte), absl::GetFlag(FLAGS_pca_dim));
      source = absl::StrFormat("label-free PCA-%d of the pixels", absl::GetFlag(FLAGS_pca_dim));
    }
  } else {
    if (absl::GetFlag(FLAGS_train_features).empty() || absl::GetFlag(FLAGS_test_features).empty() ||
        absl::GetFlag(FLAGS_train_labels).empty() || absl::GetFlag(FLAGS_test_labels).empty()) {
      Die("give --train_features/--train_labels/--test_features/--test_labels, or --fashion_mnist");
    }
    xtr = Load(absl::GetFlag(FLAGS_train_features), torch::kFloat32);
    ytr = Load(absl::GetFlag(FLAGS_train_labels), torch::kLong);
    xte = Load(absl::GetFlag(FLAGS_test_features), torch::kFloat32);
    yte = Load(absl::GetFlag(FLAGS_test_labels), torch::kLong);
    if (!absl::GetFlag(FLAGS_select_features).empty()) {
      xsel = Load(absl::GetFlag(FLAGS_select_features), torch::kFloat32);
    }
    source = absl::GetFlag(FLAGS_train_features);
  }
  if (xtr.size(0) != ytr.size(0) || xte.size(0) != yte.size(0) || xtr.size(1) != xte.size(1)) {
    Die("feature and label shapes disagree");
  }
  if (!absl::GetFlag(FLAGS_save_features).empty()) {
    const std::string d = absl::GetFlag(FLAGS_save_features);
    std::filesystem::create_directories(d);
    updp::model::WriteNpy(d + "/train_features.npy", xtr).IgnoreError();
    updp::model::WriteNpy(d + "/train_labels.npy", ytr).IgnoreError();
    updp::model::WriteNpy(d + "/test_features.npy", xte).IgnoreError();
    updp::model::WriteNpy(d + "/test_labels.npy", yte).IgnoreError();
    if (xsel.defined()) updp::model::WriteNpy(d + "/select_features.npy", xsel).IgnoreError();
  }
  const int64_t classes = std::max(ytr.max().item<int64_t>(), yte.max().item<int64_t>()) + 1;
  torch::Tensor ptr = Normalize(xtr), pte = Normalize(xte);  // probe on unit-norm features
  std::vector<std::string> strategies = absl::GetFlag(FLAGS_strategies);
  if (xsel.defined() && std::find(strategies.begin(), strategies.end(), "updp") == strategies.end()) {
    strategies.push_back("updp");
  }
  ExternalPicks external;
  if (!absl::GetFlag(FLAGS_external_picks).empty()) {
    auto e = ReadExternalPicks(absl::GetFlag(FLAGS_external_picks), xtr.size(0));
    if (!e.ok()) Die(std::string(e.status().message()));
    external = *std::move(e);
  }
  updp::select::KMeansParameters km;
  km.full_max_work = absl::GetFlag(FLAGS_kmeans_full_max_work);
  km.tolerance = absl::GetFlag(FLAGS_kmeans_tolerance);
  km.max_iterations = absl::GetFlag(FLAGS_kmeans_max_iterations);
  km.full_init_max_points = absl::GetFlag(FLAGS_kmeans_full_init_max_points);
  km.init_points_per_centroid = absl::GetFlag(FLAGS_kmeans_init_points_per_centroid);
  std::ofstream csv;
  if (!absl::GetFlag(FLAGS_csv).empty()) {
    csv.open(absl::GetFlag(FLAGS_csv));
    csv << "strategy,budget,seed,accuracy,seconds\n";
  }
  std::printf("Features: %s. Train %lld x %lld, test %lld, %lld classes, %d seeds.\n",
              source.c_str(), static_cast<long long>(xtr.size(0)), static_cast<long long>(xtr.size(1)),
              static_cast<long long>(xte.size(0)), static_cast<long long>(classes), absl::GetFlag(FLAGS_seeds));
  std::printf("k-means: every row to convergence (tolerance %g, at most %d iterations, seeding on "
              "%lld rows) when N*K*D <= %g, else %d iterations on %d rows per centroid.\n\n",
              km.tolerance, km.max_iterations, static_cast<long long>(km.full_init_max_points),
              km.full_max_work, km.niter, km.max_points_per_centroid);
  std::vector<std::string> budgets = absl::GetFlag(FLAGS_budgets);
  std::string rule = "|---|";
  for (size_t i = 0; i < budgets.size(); ++i) rule += "---|";
  std::printf("| strategy \\ budget | %s |\n%s\n", absl::StrJoin(budgets, " | ").c_str(), rule.c_str());
  // Built-in strategies first, then the external ones (is_external).
  std::vector<std::pair<std::string, bool>> rows;
  for (const auto& s : strategies) rows.push_back({s, false});
  for (const auto& s : external.names) rows.push_back({s, true});
  for (const auto& [s, is_external] : rows) {
    const std::string name = is_external ? s : s + absl::GetFlag(FLAGS_name_suffix);
    std::vector<std::string> cells;
    for (const auto& bs : budgets) {
      const int64_t b = std::stoll(bs);
      std::vector<double> acc;
      for (int seed = 0; seed < absl::GetFlag(FLAGS_seeds); ++seed) {
        std::vector<int64_t> idx;
        std::string secs;  // empty for external picks: not timed here
        if (is_external) {
          const auto& cells_of = external.picks.at(s);
          auto it = cells_of.find({b, seed});
          if (it == cells_of.end()) {
            Die(absl::StrFormat("%s has no picks for budget %d seed %d", s, b, seed));
          }
          idx = it->second;
        } else {
          updp::select::SelectOptions o;
          o.strategy = s == "updp" ? "kmeans" : s;
          o.budget = b;
          o.seed = static_cast<uint64_t>(seed);
          o.kmeans = km;
          o.probcover.purity = absl::GetFlag(FLAGS_probcover_purity);
          o.probcover.clusters = absl::GetFlag(FLAGS_probcover_clusters);
          if (s == "updp" && !xsel.defined()) Die("updp needs --select_features or --model_dir");
          auto t0 = std::chrono::steady_clock::now();
          auto picks = updp::select::Select(s == "updp" ? xsel : xtr, o);
          secs = absl::StrCat(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
          if (!picks.ok()) Die(std::string(picks.status().message()));
          for (auto& p : *picks) idx.push_back(p.index);
        }
        if (!is_external && s == "kmeans" && absl::GetFlag(FLAGS_kmeans_report)) {
          // The clustering behind the picks, measured as scikit-learn reports it (its
          // seed stream differs from the one Select draws, so it is a like-for-like
          // sample, not the same run).
          auto x = updp::select::FeatureSource::FromTensor(xtr, /*normalize=*/true);
          updp::select::ThreadPool pool(0);
          auto r = updp::select::TrainKMeans(*x, b, km, static_cast<uint64_t>(seed), pool);
          // Inertia of the final centroids over every row (sampled mode trains on a sample).
          const torch::Tensor u = Normalize(xtr).to(torch::kFloat64);
          const torch::Tensor c = r.centroids.to(torch::kFloat64);
          const double inertia =
              torch::addmm(c.pow(2).sum(1).unsqueeze(0), u, c.t(), 1.0, -2.0)
                  .add_(u.pow(2).sum(1, true)).clamp_min_(0.0).amin(1).sum().item<double>();
          int reseeded = 0;
          for (const auto& st : r.stats) reseeded += st.empty_reseeded;
          std::cerr << absl::StrFormat(
              "updp-eval: k-means B=%d seed=%d: %s, %d iterations%s, %d empty clusters reseeded, "
              "inertia %.2f, %.1f s\n",
              b, seed, r.full ? "full" : "sampled", r.stats.back().iteration,
              r.converged ? " (converged)" : "", reseeded, inertia, r.stats.back().seconds);
        }
        torch::Tensor it = torch::tensor(idx);
        double a = ProbeAccuracy(ptr.index_select(0, it), ytr.index_select(0, it), pte, yte, classes);
        acc.push_back(a);
        if (csv.is_open()) csv << name << "," << b << "," << seed << "," << a << "," << secs << std::endl;
      }
      double mean = 0, var = 0;
      for (double a : acc) mean += a / acc.size();
      for (double a : acc) var += (a - mean) * (a - mean) / std::max<size_t>(1, acc.size() - 1);
      cells.push_back(absl::StrFormat("%.1f ± %.1f", 100 * mean, 100 * std::sqrt(var)));
    }
    std::printf("| %s | %s |\n", name.c_str(), absl::StrJoin(cells, " | ").c_str());
    std::fflush(stdout);
  }
  return 0;
}
