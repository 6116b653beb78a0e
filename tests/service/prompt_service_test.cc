// LEARN_PROMPT jobs, prompt transfer between datasets and servers, and the updp strategy.
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "server/model/safetensors.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class PromptServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("prompt");
    WriteImages(root_ + "/a", 0, 160);
    WriteImages(root_ + "/b", 1000, 80);
    server_ = std::make_unique<Server>(root_, TinyModel(root_), 64);
    v1::Dataset d;
    ASSERT_TRUE(server_->Register("a", root_ + "/a", &d).ok());
    ASSERT_TRUE(server_->Register("b", root_ + "/b", &d).ok());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  v1::Job Learn(const std::string& name, int epochs) {
    v1::LearnPromptRequest r;
    r.set_dataset("a");
    r.set_prompt_name(name);
    r.set_epochs(epochs);
    r.set_batch_size(32);
    r.set_num_context(4);
    r.set_intended_budget(8);
    r.set_seed(9);
    grpc::ClientContext c;
    v1::Job j;
    auto s = server_->stub()->LearnPrompt(&c, r, &j);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return j;
  }
  std::string Export(const std::string& name) {
    grpc::ClientContext c;
    v1::ExportPromptRequest r;
    r.set_name(name);
    v1::ExportPromptResponse resp;
    auto s = server_->stub()->ExportPrompt(&c, r, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.artifact();
  }
  std::string root_;
  std::unique_ptr<Server> server_;
};

torch::Tensor Context(const std::string& artifact) {
  auto f = model::SafetensorsFile::FromBytes(artifact, "artifact");
  return *(*f)->Get("context");
}

TEST_F(PromptServiceTest, LearnExportImportAndSelectOnAnotherDataset) {
  v1::Job job = Learn("pa", 3);
  EXPECT_EQ(job.kind(), v1::LEARN_PROMPT);
  v1::Job done = server_->WaitJob(job.job_id());
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  EXPECT_TRUE(done.progress().has_loss());
  auto hist = nlohmann::json::parse(done.result_json())["history"];
  ASSERT_EQ(hist.size(), 3u);
  {
    grpc::ClientContext c;
    v1::ListPromptsResponse r;
    ASSERT_TRUE(server_->stub()->ListPrompts(&c, {}, &r).ok());
    ASSERT_EQ(r.prompts_size(), 1);
    EXPECT_EQ(r.prompts(0).trained_on_dataset(), "a");
    EXPECT_EQ(r.prompts(0).num_clusters(), 8);
  }
  std::string art = Export("pa");
  ASSERT_FALSE(art.empty());
  // Import under a new name, then select on dataset b (never embedded: the updp job
  // computes its image and prompted features in one decoding pass).
  {
    grpc::ClientContext c;
    v1::ImportPromptRequest r;
    r.set_name("pa-copy");
    r.set_artifact(art);
    v1::Prompt p;
    ASSERT_TRUE(server_->stub()->ImportPrompt(&c, r, &p).ok());
    EXPECT_EQ(p.trained_on_dataset(), "a");
    grpc::ClientContext c2;
    EXPECT_EQ(server_->stub()->ImportPrompt(&c2, r, &p).error_code(), grpc::ALREADY_EXISTS);
    grpc::ClientContext c3;
    r.set_name("junk");
    r.set_artifact("not a prompt");
    EXPECT_EQ(server_->stub()->ImportPrompt(&c3, r, &p).error_code(), grpc::INVALID_ARGUMENT);
  }
  for (const char* rule : {"kmeans", "cluster-head"}) {
    v1::SelectRequest s;
    s.set_dataset(std::string(rule) == "kmeans" ? "b" : "a");
    s.set_strategy("updp");
    s.set_prompt("pa-copy");
    s.set_rule(rule);
    s.set_budget(8);
    grpc::ClientContext c;
    v1::Job j;
    ASSERT_TRUE(server_->stub()->Select(&c, s, &j).ok());
    v1::Job sel = server_->WaitJob(j.job_id());
    ASSERT_EQ(sel.state(), v1::SUCCEEDED) << rule << ": " << sel.error();
    grpc::ClientContext gc;
    v1::GetSelectionRequest gr;
    gr.set_job_id(j.job_id());
    v1::GetSelectionResponse resp;
    ASSERT_TRUE(server_->stub()->GetSelection(&gc, gr, &resp).ok());
    EXPECT_EQ(resp.total(), 8) << rule;
    std::set<std::string> ids;
    std::set<int64_t> heads;
    for (const auto& it : resp.items()) {
      EXPECT_TRUE(ids.insert(it.item_id()).second)
          << rule << ": " << it.item_id() << " picked twice";
      if (std::string(rule) == "cluster-head" && it.cluster() >= 0) {
        // One pick per cluster head, scored by its cluster probability.
        EXPECT_TRUE(heads.insert(it.cluster()).second) << "cluster " << it.cluster() << " twice";
        EXPECT_GT(it.score(), 0.0);
        EXPECT_LE(it.score(), 1.0);
      }
    }
    if (std::string(rule) == "cluster-head") EXPECT_GE(heads.size(), 1u);
  }
  grpc::ClientContext dc;
  v1::GetDatasetRequest dr;
  dr.set_name("b");
  v1::Dataset d;
  ASSERT_TRUE(server_->stub()->GetDataset(&dc, dr, &d).ok());
  EXPECT_EQ(d.feature_sources_size(), 2);  // image + prompt:pa-copy, from one pass

  // A server with another checkpoint refuses the prompt.
  std::string other = MakeTempDir("prompt_other");
  Server s2(other, TinyModel(other, 1, "small"));
  grpc::ClientContext c;
  v1::ImportPromptRequest r;
  r.set_name("pa");
  r.set_artifact(art);
  v1::Prompt p;
  grpc::Status st = s2.stub()->ImportPrompt(&c, r, &p);
  EXPECT_EQ(st.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("incompatible"), std::string::npos) << st.error_message();
  s2.Stop();
}

TEST_F(PromptServiceTest, CancelledAndResumedJobEqualsUninterrupted) {
  v1::Job ref = Learn("ref", 6);
  ASSERT_EQ(server_->WaitJob(ref.job_id()).state(), v1::SUCCEEDED);

  // Held deterministically after epoch 2's checkpoint; cancelled there.
  server_->gate().Arm(
      [](const core::JobInfo& j) { return j.progress.stage == "train" && j.progress.done >= 2; });
  v1::Job job = Learn("cut", 6);
  ASSERT_TRUE(server_->gate().WaitHeld());
  {
    // The name is the running job's: an import of it is refused (it used to be
    // accepted and then overwritten by the job).
    grpc::ClientContext ic;
    v1::ImportPromptRequest ir;
    ir.set_name("cut");
    ir.set_artifact(Export("ref"));
    v1::Prompt p;
    grpc::Status st = server_->stub()->ImportPrompt(&ic, ir, &p);
    EXPECT_EQ(st.error_code(), grpc::ALREADY_EXISTS) << st.error_message();
    EXPECT_NE(st.error_message().find("being learned by " + job.job_id()), std::string::npos)
        << st.error_message();
  }
  grpc::ClientContext c;
  v1::CancelJobRequest cr;
  cr.set_job_id(job.job_id());
  v1::Job j;
  ASSERT_TRUE(server_->stub()->CancelJob(&c, cr, &j).ok());
  server_->gate().Release();
  v1::Job cancelled = server_->WaitJob(job.job_id());
  ASSERT_EQ(cancelled.state(), v1::CANCELLED);
  EXPECT_GE(cancelled.progress().done(), 2);
  EXPECT_LT(cancelled.progress().done(), 6);
  // Its working folder (view cache, checkpoint) is kept while it is resumable...
  const std::string dir = root_ + "/data/jobs/" + job.job_id();
  EXPECT_TRUE(fs::exists(dir + "/checkpoint.safetensors"));
  grpc::ClientContext rc;
  v1::ResumeJobRequest rr;
  rr.set_job_id(job.job_id());
  ASSERT_TRUE(server_->stub()->ResumeJob(&rc, rr, &j).ok());
  ASSERT_EQ(server_->WaitJob(job.job_id()).state(), v1::SUCCEEDED);
  // ... and removed once the prompt is stored.
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(torch::equal(Context(Export("ref")), Context(Export("cut"))));
}

// The artifact with `edit` applied to its safetensors JSON header.
std::string EditHeader(const std::string& art, const std::function<void(nlohmann::json&)>& edit) {
  uint64_t n = 0;
  std::memcpy(&n, art.data(), 8);
  auto h = nlohmann::json::parse(art.substr(8, n));
  edit(h);
  const std::string hs = h.dump();
  const uint64_t m = hs.size();
  return std::string(reinterpret_cast<const char*>(&m), 8) + hs + art.substr(8 + n);
}

std::string EditConfig(const std::string& art, const char* key, int value) {
  return EditHeader(art, [&](nlohmann::json& h) {
    auto cfg = nlohmann::json::parse(h["__metadata__"]["config"].get<std::string>());
    cfg[key] = value;
    h["__metadata__"]["config"] = cfg.dump();
  });
}

TEST_F(PromptServiceTest, ImportValidatesTheArtifactAtTheDoor) {
  v1::Job job = Learn("pv", 1);
  ASSERT_EQ(server_->WaitJob(job.job_id()).state(), v1::SUCCEEDED);
  const std::string art = Export("pv");
  auto import = [&](const std::string& name, const std::string& bytes) {
    grpc::ClientContext c;
    v1::ImportPromptRequest r;
    r.set_name(name);
    r.set_artifact(bytes);
    v1::Prompt p;
    return server_->stub()->ImportPrompt(&c, r, &p);
  };
  // Out-of-vocabulary special token: the first int64 of special_ids.
  std::string bad_ids = art;
  {
    uint64_t n = 0;
    std::memcpy(&n, art.data(), 8);
    auto h = nlohmann::json::parse(art.substr(8, n));
    const size_t at = 8 + n + h["special_ids"]["data_offsets"][0].get<size_t>();
    const int64_t huge = 1 << 30;
    bad_ids.replace(at, 8, reinterpret_cast<const char*>(&huge), 8);
  }
  const grpc::StatusCode kInvalid = grpc::INVALID_ARGUMENT;
  const std::vector<std::tuple<std::string, std::string, grpc::StatusCode, std::string>> cases = {
      {"num_context 5000", EditConfig(art, "num_context", 5000), kInvalid, "num_context"},
      {"num_clusters 0", EditConfig(art, "num_clusters", 0), kInvalid, "num_clusters"},
      {"special id outside the vocabulary", bad_ids, kInvalid, "vocabulary"},
      {"trailing bytes", art + "junk", kInvalid, "trailing"},
      // Over --max_request_bytes (64 MiB by default): gRPC refuses the message itself.
      {"over 64 MiB", art + std::string(65 << 20, 'x'), grpc::RESOURCE_EXHAUSTED,
       "larger than max"},
  };
  for (const auto& [what, bytes, code, needle] : cases) {
    grpc::Status s = import("bad", bytes);
    EXPECT_EQ(s.error_code(), code) << what << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(needle), std::string::npos)
        << what << ": " << s.error_message();
  }
  EXPECT_TRUE(import("good", art).ok());  // the untouched artifact still imports
  for (const auto& e : fs::directory_iterator(root_ + "/data/prompts")) {
    EXPECT_NE(e.path().filename().string().rfind("bad.", 0), 0u) << e.path();  // nothing stored
  }
}

}  // namespace
}  // namespace updp::testing
