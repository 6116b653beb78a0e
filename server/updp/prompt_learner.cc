#include "server/updp/prompt_learner.h"

#include <sys/stat.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/model/safetensors.h"
#include "server/util/atomic_file.h"

namespace updp::prompt {

namespace F = torch::nn::functional;
using nlohmann::json;

namespace {

constexpr char kFormat[] = "updp-prompt-v1";
// Bounds an artifact's config must respect (the service's LearnPrompt bounds for M;
// K far above any labeling budget).
constexpr int kMaxContext = 64;
constexpr int kMaxClusters = 100000;

// PyTorch's default nn.Linear initialisation: U(-1/sqrt(in), 1/sqrt(in)).
std::pair<torch::Tensor, torch::Tensor> LinearInit(int64_t in, int64_t out) {
  const double b = 1.0 / std::sqrt(static_cast<double>(in));
  return {torch::empty({out, in}).uniform_(-b, b), torch::empty({out}).uniform_(-b, b)};
}

torch::Tensor Mlp(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& b1,
                  const torch::Tensor& w2, const torch::Tensor& b2) {
  return torch::linear(torch::relu(torch::linear(x, w1, b1)), w2, b2);
}

// NT-Xent over 2n rows where row i and row i+n are positives.
torch::Tensor NtXent(const torch::Tensor& a, const torch::Tensor& b, double tau) {
  const int64_t n = a.size(0);
  torch::Tensor z = torch::cat({a, b}, 0);
  torch::Tensor sim = torch::mm(z, z.t()) / tau;
  torch::Tensor eye =
      torch::eye(2 * n, torch::TensorOptions().dtype(torch::kBool).device(z.device()));
  sim = sim.masked_fill(eye, -std::numeric_limits<float>::infinity());
  torch::Tensor target = torch::cat({torch::arange(n, 2 * n), torch::arange(0, n)}).to(z.device());
  return F::cross_entropy(sim, target);
}

}  // namespace

json PromptConfig::ToJson() const {
  return {{"num_context", num_context},
          {"num_clusters", num_clusters},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"learning_rate", learning_rate},
          {"views", views},
          {"seed", seed},
          {"init_phrase", init_phrase},
          {"tau_instance", tau_instance},
          {"tau_cluster", tau_cluster},
          {"instance_dim", instance_dim},
          {"feature", feature},
          {"trained_on_dataset", trained_on_dataset}};
}

absl::StatusOr<PromptConfig> PromptConfig::FromJson(const json& j) {
  PromptConfig c;
  try {
    c.num_context = j.value("num_context", c.num_context);
    c.num_clusters = j.value("num_clusters", c.num_clusters);
    c.epochs = j.value("epochs", c.epochs);
    c.batch_size = j.value("batch_size", c.batch_size);
    c.learning_rate = j.value("learning_rate", c.learning_rate);
    c.views = j.value("views", c.views);
    c.seed = j.value("seed", c.seed);
    c.init_phrase = j.value("init_phrase", c.init_phrase);
    c.tau_instance = j.value("tau_instance", c.tau_instance);
    c.tau_cluster = j.value("tau_cluster", c.tau_cluster);
    c.instance_dim = j.value("instance_dim", c.instance_dim);
    c.feature = j.value("feature", c.feature);
    c.trained_on_dataset = j.value("trained_on_dataset", "");
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("prompt config: ", e.what()));
  }
  if (c.feature != "mean" && c.feature != "cls" && c.feature != "projected") {
    return absl::InvalidArgumentError(absl::StrCat("prompt config: feature '", c.feature,
                                                   "' is not one of mean, cls, projected"));
  }
  return c;
}

PromptModule PromptModule::Create(const model::Blip2Model& m, const model::BertTokenizer& tok,
                                  const PromptConfig& cfg) {
  torch::manual_seed(cfg.seed);
  PromptModule p;
  p.cls_id_ = tok.cls_id();
  p.sep_id_ = tok.sep_id();
  p.feature_ = cfg.feature;
  const torch::Tensor& emb = m.word_embeddings();
  const int64_t d = emb.size(1);
  std::vector<int64_t> ids;
  for (const auto& piece : tok.Tokenize(cfg.init_phrase)) ids.push_back(tok.TokenId(piece));
  if (ids.empty()) {
    p.ctx_ = torch::randn({cfg.num_context, d}) * 0.02;
  } else {
    std::vector<int64_t> rep;
    for (int i = 0; i < cfg.num_context; ++i) rep.push_back(ids[i % ids.size()]);
    p.ctx_ = emb.index_select(0, torch::tensor(rep).to(emb.device())).to(torch::kCPU).clone();
  }
  const int64_t fd = cfg.feature == "projected" ? m.config().image_text_hidden_size : d;
  std::tie(p.i_w1_, p.i_b1_) = LinearInit(fd, fd);
  std::tie(p.i_w2_, p.i_b2_) = LinearInit(fd, cfg.instance_dim);
  std::tie(p.c_w1_, p.c_b1_) = LinearInit(fd, fd);
  std::tie(p.c_w2_, p.c_b2_) = LinearInit(fd, cfg.num_clusters);
  const auto dev = m.options().device;
  for (torch::Tensor* t :
       {&p.ctx_, &p.i_w1_, &p.i_b1_, &p.i_w2_, &p.i_b2_, &p.c_w1_, &p.c_b1_, &p.c_w2_, &p.c_b2_}) {
    *t = t->to(dev, torch::kFloat32).detach().set_requires_grad(true);
  }
  return p;
}

std::vector<torch::Tensor> PromptModule::parameters() const {
  return {ctx_, i_w1_, i_b1_, i_w2_, i_b2_, c_w1_, c_b1_, c_w2_, c_b2_};
}

std::vector<std::pair<std::string, torch::Tensor>> PromptModule::named() const {
  return {{"context", ctx_},
          {"instance_head.0.weight", i_w1_},
          {"instance_head.0.bias", i_b1_},
          {"instance_head.2.weight", i_w2_},
          {"instance_head.2.bias", i_b2_},
          {"cluster_head.0.weight", c_w1_},
          {"cluster_head.0.bias", c_b1_},
          {"cluster_head.2.weight", c_w2_},
          {"cluster_head.2.bias", c_b2_}};
}

void PromptModule::CopyFrom(const std::vector<std::pair<std::string, torch::Tensor>>& src) {
  torch::NoGradGuard g;
  auto mine = named();
  for (size_t i = 0; i < mine.size(); ++i) mine[i].second.copy_(src[i].second);
}

absl::StatusOr<std::string> PromptModule::Serialize(const PromptConfig& cfg,
                                                    const std::string& identity) const {
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (auto& [n, v] : named()) t.emplace_back(n, v.detach().to(torch::kCPU));
  t.emplace_back("special_ids", torch::tensor({cls_id_, sep_id_}, torch::kLong));
  return model::SerializeSafetensors(
      t, {{"format", kFormat}, {"config", cfg.ToJson().dump()}, {"model_identity", identity}});
}

absl::StatusOr<std::pair<PromptConfig, std::string>> PromptModule::ReadMetadata(
    const std::string& bytes) {
  auto f = model::SafetensorsFile::FromBytes(bytes, "prompt artifact");
  if (!f.ok()) return f.status();
  const auto& md = (*f)->metadata();
  auto fmt = md.find("format");
  if (fmt == md.end() || fmt->second != kFormat || !md.count("config") ||
      !md.count("model_identity")) {
    return absl::InvalidArgumentError("artifact: not an updp prompt (missing format metadata)");
  }
  auto j = json::parse(md.at("config"), nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError("artifact: prompt config is not JSON");
  auto cfg = PromptConfig::FromJson(j);
  if (!cfg.ok()) return cfg.status();
  return std::make_pair(*cfg, md.at("model_identity"));
}

absl::StatusOr<std::pair<PromptModule, PromptConfig>> PromptModule::Load(
    const std::string& bytes, const model::Blip2Model& m) {
  auto meta = ReadMetadata(bytes);
  if (!meta.ok()) return meta.status();
  if (meta->second != m.identity()) {
    return absl::FailedPreconditionError(absl::StrCat("artifact: prompt was trained on model ",
                                                      meta->second, ", the loaded model is ",
                                                      m.identity(), " (incompatible checkpoint)"));
  }
  auto f = model::SafetensorsFile::FromBytes(bytes, "prompt artifact");
  if (!f.ok()) return f.status();
  const PromptConfig& cfg = meta->first;
  // Validated here, at the door: a bad artifact must not be stored and fail later.
  if (cfg.num_context < 1 || cfg.num_context > kMaxContext) {
    return absl::InvalidArgumentError(
        absl::StrCat("artifact: num_context ", cfg.num_context, " is not in 1..", kMaxContext));
  }
  if (cfg.num_clusters < 2 || cfg.num_clusters > kMaxClusters) {
    return absl::InvalidArgumentError(
        absl::StrCat("artifact: num_clusters ", cfg.num_clusters, " is not in 2..", kMaxClusters));
  }
  if (cfg.instance_dim < 1 || cfg.instance_dim > 65536) {
    return absl::InvalidArgumentError("artifact: instance_dim is not in 1..65536");
  }
  size_t end = 0;
  for (const auto& [name, info] : (*f)->tensors()) end = std::max(end, info.end);
  if (end != (*f)->data_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("artifact: ", (*f)->data_bytes() - end,
                                                   " trailing bytes after the last tensor"));
  }
  PromptModule p;
  p.feature_ = cfg.feature;
  if ((*f)->tensors().size() != p.named().size() + 1) {
    return absl::InvalidArgumentError("artifact: unexpected tensors (not an updp prompt)");
  }
  auto ids = (*f)->Get("special_ids", torch::kLong);
  if (!ids.ok()) return ids.status();
  if (ids->dim() != 1 || ids->numel() != 2) {
    return absl::InvalidArgumentError("artifact: special_ids must hold 2 token ids");
  }
  p.cls_id_ = (*ids)[0].item<int64_t>();
  p.sep_id_ = (*ids)[1].item<int64_t>();
  const int64_t vocab = m.word_embeddings().size(0);
  for (int64_t id : {p.cls_id_, p.sep_id_}) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("artifact: special token id ", id,
                                                     " is outside the vocabulary (", vocab, ")"));
    }
  }
  const int64_t d = m.word_embeddings().size(1);
  const int64_t fd = cfg.feature == "projected" ? m.config().image_text_hidden_size : d;
  std::map<std::string, std::vector<int64_t>> shapes = {
      {"context", {cfg.num_context, d}},
      {"instance_head.0.weight", {fd, fd}},
      {"instance_head.0.bias", {fd}},
      {"instance_head.2.weight", {cfg.instance_dim, fd}},
      {"instance_head.2.bias", {cfg.instance_dim}},
      {"cluster_head.0.weight", {fd, fd}},
      {"cluster_head.0.bias", {fd}},
      {"cluster_head.2.weight", {cfg.num_clusters, fd}},
      {"cluster_head.2.bias", {cfg.num_clusters}}};
  std::vector<std::pair<std::string, torch::Tensor>> loaded;
  for (auto& [name, shape] : p.named()) {
    auto t = (*f)->Get(name, torch::kFloat32);
    if (!t.ok()) return t.status();
    if (t->sizes().vec() != shapes.at(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("artifact: tensor '", name, "' has the wrong shape"));
    }
    if (!torch::isfinite(*t).all().item<bool>()) {
      return absl::InvalidArgumentError(
          absl::StrCat("artifact: tensor '", name, "' is not finite"));
    }
    loaded.emplace_back(name, t->to(m.options().device).set_requires_grad(true));
  }
  p.ctx_ = loaded[0].second;
  p.i_w1_ = loaded[1].second;
  p.i_b1_ = loaded[2].second;
  p.i_w2_ = loaded[3].second;
  p.i_b2_ = loaded[4].second;
  p.c_w1_ = loaded[5].second;
  p.c_b1_ = loaded[6].second;
  p.c_w2_ = loaded[7].second;
  p.c_b2_ = loaded[8].second;
  return std::make_pair(std::move(p), cfg);
}

torch::Tensor PromptModule::JointFeatures(const model::Blip2Model& m,
                                          const torch::Tensor& image_embeds) const {
  const int64_t b = image_embeds.size(0);
  const auto& emb = m.word_embeddings();
  torch::Tensor cls = emb[cls_id_].unsqueeze(0), sep = emb[sep_id_].unsqueeze(0);
  // [CLS] c_1..c_M [SEP] as input embeddings; positions 0..M+1 are added by the model.
  torch::Tensor text = torch::cat({cls, ctx_, sep}, 0).unsqueeze(0).expand({b, -1, -1});
  torch::Tensor out =
      m.MultimodalOutput(image_embeds, m.TextEmbeddingsFromInputs(text), torch::Tensor());
  const int64_t q = m.config().num_query_tokens;
  torch::Tensor h;
  if (feature_ == "cls") {
    h = out.select(1, q);
  } else if (feature_ == "projected") {
    h = m.ProjectImage(out.narrow(1, 0, q)).mean(1);
  } else {
    h = out.narrow(1, 0, q).mean(1);
  }
  return F::normalize(h, F::NormalizeFuncOptions().dim(1));
}

torch::Tensor PromptModule::Instance(const torch::Tensor& h) const {
  return F::normalize(Mlp(h, i_w1_, i_b1_, i_w2_, i_b2_), F::NormalizeFuncOptions().dim(1));
}

torch::Tensor PromptModule::Cluster(const torch::Tensor& h) const {
  return Mlp(h, c_w1_, c_b1_, c_w2_, c_b2_).softmax(1);
}

Losses ComputeLosses(const torch::Tensor& z_a, const torch::Tensor& z_b, const torch::Tensor& p_a,
                     const torch::Tensor& p_b, double tau_i, double tau_c) {
  Losses l;
  l.instance = NtXent(z_a, z_b, tau_i);
  torch::Tensor ca = F::normalize(p_a.t(), F::NormalizeFuncOptions().dim(1));
  torch::Tensor cb = F::normalize(p_b.t(), F::NormalizeFuncOptions().dim(1));
  torch::Tensor clu = NtXent(ca, cb, tau_c);
  const double log_k = std::log(static_cast<double>(p_a.size(1)));
  auto h = [&](const torch::Tensor& p) {
    torch::Tensor q = p.mean(0);
    return log_k + (q * torch::log(q.clamp_min(1e-12))).sum();
  };
  l.entropy = h(p_a) + h(p_b);
  l.cluster = clu + l.entropy;
  l.total = l.instance + l.cluster;
  return l;
}

ViewCache::ViewCache(torch::Tensor whole)
    : ViewCache(std::vector<torch::Tensor>{std::move(whole)}) {}

ViewCache::ViewCache(std::vector<torch::Tensor> parts) {
  for (auto& p : parts) {
    if (p.size(0) == 0) continue;
    starts_.push_back(size_);
    size_ += p.size(0);
    views_ = p.size(1);
    parts_.push_back(std::move(p));
  }
}

torch::Tensor ViewCache::Gather(const torch::Tensor& rows, const torch::Tensor& view) const {
  if (parts_.size() == 1) return parts_[0].index({rows, view});
  auto ra = rows.accessor<int64_t, 1>();
  auto va = view.accessor<int64_t, 1>();
  std::vector<torch::Tensor> out;
  out.reserve(rows.size(0));
  for (int64_t i = 0; i < rows.size(0); ++i) {
    const size_t p = std::upper_bound(starts_.begin(), starts_.end(), ra[i]) - starts_.begin() - 1;
    out.push_back(parts_[p][ra[i] - starts_[p]][va[i]]);
  }
  return torch::stack(out, 0);
}

PromptTrainer::PromptTrainer(const model::Blip2Model& m, PromptModule module, PromptConfig cfg)
    : m_(m), module_(std::move(module)), cfg_(std::move(cfg)) {
  adam_ = std::make_unique<torch::optim::Adam>(module_.parameters(),
                                               torch::optim::AdamOptions(cfg_.learning_rate));
}

std::optional<EpochStats> PromptTrainer::RunEpoch(
    const ViewCache& cache, const std::function<bool()>& cancelled,
    const std::function<void(int64_t, int64_t)>& on_batch) {
  const int64_t n = cache.size(), v = cache.views();
  const int epoch = epochs_done_ + 1;
  // Everything random in an epoch derives from (seed, epoch): resuming from a
  // checkpoint replays the same batches.
  torch::Generator gen = at::detail::createCPUGenerator(cfg_.seed * 1000003ull + epoch);
  torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
  torch::Tensor va = torch::randint(v, {n}, gen, torch::kLong);
  torch::Tensor vb = (va + 1 + torch::randint(v - 1, {n}, gen, torch::kLong)) % v;
  const int64_t bs = std::min<int64_t>(cfg_.batch_size, n);
  const int64_t batches = std::max<int64_t>(1, n / bs);
  EpochStats st;
  st.epoch = epoch;
  torch::Tensor usage = torch::zeros({cfg_.num_clusters});
  const auto dev = m_.options().device;
  for (int64_t bi = 0; bi < batches; ++bi) {
    if (cancelled && cancelled()) return std::nullopt;
    torch::Tensor idx = perm.narrow(0, bi * bs, bs);
    torch::Tensor a = cache.Gather(idx, va.index_select(0, idx)).to(dev, torch::kFloat32);
    torch::Tensor b = cache.Gather(idx, vb.index_select(0, idx)).to(dev, torch::kFloat32);
    torch::Tensor ha = module_.JointFeatures(m_, a), hb = module_.JointFeatures(m_, b);
    torch::Tensor pa = module_.Cluster(ha), pb = module_.Cluster(hb);
    Losses l = ComputeLosses(module_.Instance(ha), module_.Instance(hb), pa, pb, cfg_.tau_instance,
                             cfg_.tau_cluster);
    adam_->zero_grad();
    l.total.backward();
    adam_->step();
    st.loss += l.total.item<double>() / batches;
    st.instance_loss += l.instance.item<double>() / batches;
    st.cluster_loss += (l.cluster - l.entropy).item<double>() / batches;
    st.entropy_term += l.entropy.item<double>() / batches;
    usage += pa.detach().sum(0).to(torch::kCPU);
    if (on_batch) on_batch(bi + 1, batches);
  }
  torch::Tensor q = usage / usage.sum();
  st.usage_entropy = -(q * torch::log(q.clamp_min(1e-12))).sum().item<double>();
  epochs_done_ = epoch;
  history_.push_back(st);
  return st;
}

absl::Status PromptTrainer::SaveCheckpoint(const std::string& dir) const {
  ::mkdir(dir.c_str(), 0755);
  json hist = json::array();
  for (const auto& h : history_) {
    hist.push_back({{"epoch", h.epoch},
                    {"loss", h.loss},
                    {"instance", h.instance_loss},
                    {"cluster", h.cluster_loss},
                    {"entropy", h.entropy_term},
                    {"usage_entropy", h.usage_entropy}});
  }
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (auto& [n, v] : module_.named()) t.emplace_back(n, v.detach().to(torch::kCPU));
  // The optimiser state goes first (torch archive), then the tensors with the epoch
  // count: the tensors file is the commit point of a checkpoint.
  std::string opt_tmp = dir + "/adam.pt.tmp";
  try {
    torch::save(*adam_, opt_tmp);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("checkpoint: ", e.what()));
  }
  std::string opt_path = absl::StrCat(dir, "/adam.", epochs_done_, ".pt");
  if (std::rename(opt_tmp.c_str(), opt_path.c_str()) != 0) {
    return absl::InternalError("checkpoint: rename failed");
  }
  return model::WriteSafetensors(
      dir + "/checkpoint.safetensors", t,
      {{"epochs_done", std::to_string(epochs_done_)}, {"history", hist.dump()}});
}

absl::Status PromptTrainer::LoadCheckpoint(const std::string& dir) {
  auto f = model::SafetensorsFile::Open(dir + "/checkpoint.safetensors");
  if (!f.ok()) return f.status();
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (auto& [n, v] : module_.named()) {
    auto x = (*f)->Get(n, torch::kFloat32);
    if (!x.ok()) return x.status();
    t.emplace_back(n, *x);
  }
  module_.CopyFrom(t);
  const auto& md = (*f)->metadata();
  // The checkpoint is this job's own file; a damaged one is an error, not a crash.
  try {
    epochs_done_ = std::stoi(md.at("epochs_done"));
    history_.clear();
    for (const auto& h : json::parse(md.at("history"))) {
      EpochStats s;
      s.epoch = h.at("epoch");
      s.loss = h.at("loss");
      s.instance_loss = h.at("instance");
      s.cluster_loss = h.at("cluster");
      s.entropy_term = h.at("entropy");
      s.usage_entropy = h.at("usage_entropy");
      history_.push_back(s);
    }
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat(dir, "/checkpoint.safetensors: bad metadata: ", e.what()));
  }
  adam_ = std::make_unique<torch::optim::Adam>(module_.parameters(),
                                               torch::optim::AdamOptions(cfg_.learning_rate));
  try {
    torch::load(*adam_, absl::StrCat(dir, "/adam.", epochs_done_, ".pt"));
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("checkpoint: optimiser state: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace updp::prompt
