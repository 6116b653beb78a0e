// Regression tests for defects found by probing a running server: each reproduces
// the probe through the real gRPC API and checks the fixed behaviour.
#include <grpcpp/health_check_service_interface.h>
#include <sys/stat.h>

#include <future>
#include <nlohmann/json.hpp>

#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "server/core/store.h"
#include "server/model/npy.h"
#include "server/util/atomic_file.h"
#include "tests/core/core_test_util.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

// A .npy (format 2.0) with the given header dict, padded to `header_bytes`, and
// `data` as its payload.
std::string RawNpy(const std::string& dict, size_t header_bytes, const std::string& data) {
  std::string header = dict;
  while (header.size() + 1 < header_bytes) header.push_back(' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(2);
  out.push_back(0);
  const uint32_t len = static_cast<uint32_t>(header.size());
  out.append(reinterpret_cast<const char*>(&len), 4);
  return out + header + data;
}

grpc::Status Health(Server& s, grpc::health::v1::HealthCheckResponse* out) {
  auto stub = grpc::health::v1::Health::NewStub(s.channel());
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest r;
  return stub->Check(&c, r, out);
}

void ExpectCleanError(const grpc::Status& s) {
  EXPECT_LT(s.error_message().size(), 1200u) << s.error_message().substr(0, 300);
  EXPECT_EQ(s.error_message().find("Exception raised from"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(s.error_message().find("frame #"), std::string::npos) << s.error_message();
}

class RegressionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("regress");
    auto x = torch::randn({40, 8});
    ASSERT_TRUE(model::WriteNpy(root_ + "/good.npy", x).ok());
    ASSERT_TRUE(WriteFileAtomically(root_ + "/two_lines.txt", "a\nb\n").ok());
    server_ = std::make_unique<Server>(root_, TinyModel(root_));
    ASSERT_TRUE(server_->RegisterNpy("keep", root_ + "/good.npy").ok());
  }
  void TearDown() override {
    if (!server_) return;
    // Whatever a test did, the dataset registered first still selects.
    EXPECT_EQ(SelectState("keep"), v1::SUCCEEDED);
    server_->Stop();
  }
  grpc::Status Delete(const std::string& name) {
    v1::DeleteDatasetRequest r;
    r.set_name(name);
    grpc::ClientContext c;
    v1::DeleteDatasetResponse resp;
    return server_->stub()->DeleteDataset(&c, r, &resp);
  }
  v1::JobState SelectState(const std::string& ds, const std::string& strategy = "kmeans",
                           grpc::Status* submit = nullptr) {
    v1::SelectRequest r;
    r.set_dataset(ds);
    r.set_strategy(strategy);
    r.set_budget(3);
    grpc::ClientContext c;
    v1::Job j;
    grpc::Status s = server_->stub()->Select(&c, r, &j);
    if (submit) *submit = s;
    if (!s.ok()) return v1::JOB_STATE_UNSPECIFIED;
    v1::Job done = server_->WaitJob(j.job_id());
    EXPECT_EQ(done.state(), v1::SUCCEEDED) << ds << ": " << done.error();
    return done.state();
  }
  std::string root_;
  std::unique_ptr<Server> server_;
};

TEST_F(RegressionTest, AFailedRegistrationDeletesNothingElse) {
  // Probe: --embeddings good.npy --ids two_lines.txt failed, then removed the data dir.
  grpc::Status s = server_->RegisterNpy("..", root_ + "/good.npy", root_ + "/two_lines.txt");
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  s = server_->RegisterNpy("bad", root_ + "/good.npy", root_ + "/two_lines.txt");
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("has 2 ids but the array has 40 rows"), std::string::npos);
  EXPECT_TRUE(fs::exists(root_ + "/data/updp.db"));
  EXPECT_TRUE(fs::exists(root_ + "/data/features/keep/embeddings/chunk_000000.safetensors"));
  EXPECT_FALSE(fs::exists(root_ + "/data/features/bad"));
  // The name is free again after the roll-back.
  EXPECT_TRUE(server_->RegisterNpy("bad", root_ + "/good.npy").ok());
}

TEST_F(RegressionTest, DotNamesAreRefusedAndDeleteTouchesOnlyItsOwnFiles) {
  for (const char* name : {".", "..", "../keep", ".hidden", "a/b", ""}) {
    EXPECT_EQ(server_->RegisterNpy(name, root_ + "/good.npy").error_code(), grpc::INVALID_ARGUMENT)
        << name;
    EXPECT_EQ(Delete(name).error_code(), grpc::INVALID_ARGUMENT) << name;
  }
  ASSERT_TRUE(server_->RegisterNpy("other", root_ + "/good.npy").ok());
  ASSERT_TRUE(Delete("other").ok());
  EXPECT_FALSE(fs::exists(root_ + "/data/features/other"));
  EXPECT_TRUE(fs::exists(root_ + "/data/features/keep/embeddings/chunk_000000.safetensors"));
  EXPECT_EQ(Delete("other").error_code(), grpc::NOT_FOUND);
}

TEST_F(RegressionTest, ConcurrentDuplicateRegistrationsLeaveTheWinnerWhole) {
  // Probe: four simultaneous registrations of one name (a client retrying) left the
  // winner without its feature chunk in 10 of 10 rounds.
  auto x = torch::randn({20000, 64});
  ASSERT_TRUE(model::WriteNpy(root_ + "/big.npy", x).ok());
  for (int round = 0; round < 5; ++round) {
    std::vector<std::future<grpc::Status>> calls;
    for (int i = 0; i < 4; ++i) {
      calls.push_back(std::async(std::launch::async,
                                 [&] { return server_->RegisterNpy("r", root_ + "/big.npy"); }));
    }
    int ok = 0, exists = 0;
    for (auto& f : calls) {
      grpc::Status s = f.get();
      ok += s.ok();
      exists += s.error_code() == grpc::ALREADY_EXISTS;
    }
    EXPECT_EQ(ok, 1) << "round " << round;
    EXPECT_EQ(exists, 3) << "round " << round;
    EXPECT_EQ(SelectState("r"), v1::SUCCEEDED) << "round " << round;
    ASSERT_TRUE(Delete("r").ok());
  }
}

TEST_F(RegressionTest, LongNpyHeaderIsParsedNotACrash) {
  // Probe: a header of 32 KB or more (legal in format 2.0) crashed the server.
  std::string data(4 * 3 * 4, '\0');
  ASSERT_TRUE(
      WriteFileAtomically(
          root_ + "/long.npy",
          RawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }", 40000, data))
          .ok());
  grpc::Status s = server_->RegisterNpy("long", root_ + "/long.npy");
  EXPECT_TRUE(s.ok()) << s.error_message();
  grpc::health::v1::HealthCheckResponse h;
  ASSERT_TRUE(Health(*server_, &h).ok());
  EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(RegressionTest, HugeShapesAndLongFieldsGiveShortClearErrors) {
  ASSERT_TRUE(
      WriteFileAtomically(
          root_ + "/huge.npy",
          RawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }",
                 128, std::string(64, '\0')))
          .ok());
  grpc::Status s = server_->RegisterNpy("huge", root_ + "/huge.npy");
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << s.error_message();
  ExpectCleanError(s);
  const std::string descr(12000, 'x');
  ASSERT_TRUE(WriteFileAtomically(
                  root_ + "/descr.npy",
                  RawNpy("{'descr': '<" + descr + "', 'fortran_order': False, 'shape': (2, 2), }",
                         16384, std::string(16, '\0')))
                  .ok());
  s = server_->RegisterNpy("descr", root_ + "/descr.npy");
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << s.error_message().substr(0, 200);
  ExpectCleanError(s);
}

TEST_F(RegressionTest, AFifoIsRefusedInsteadOfBlocking) {
  ASSERT_EQ(mkfifo((root_ + "/fifo.txt").c_str(), 0600), 0);
  v1::RegisterDatasetRequest r;
  r.set_name("fifo");
  r.mutable_manifest()->set_path(root_ + "/fifo.txt");
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::Dataset d;
  grpc::Status s = server_->stub()->RegisterDataset(&c, r, &d);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("not a regular file"), std::string::npos) << s.error_message();
  EXPECT_EQ(server_->RegisterNpy("fifo2", root_ + "/fifo.txt").error_code(),
            grpc::INVALID_ARGUMENT);
}

TEST_F(RegressionTest, ASlowRegistrationDoesNotStallOtherCalls) {
  // Probe: two blocking registrations froze every RPC, health included. Here one is
  // held inside the server (deterministically, by a hook) while other calls run.
  Note entered, release;
  server_->app().core().SetRegistrationHookForTest([&](const std::string& name) {
    if (name != "held") return;
    entered.Notify();
    release.Wait(300);
  });
  auto held = std::async(std::launch::async,
                         [&] { return server_->RegisterNpy("held", root_ + "/good.npy"); });
  ASSERT_TRUE(entered.Wait());
  grpc::health::v1::HealthCheckResponse h;
  EXPECT_TRUE(Health(*server_, &h).ok());
  EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListDatasetsResponse l;
    ASSERT_TRUE(server_->stub()->ListDatasets(&c, v1::ListDatasetsRequest(), &l).ok());
    ASSERT_EQ(l.datasets_size(), 1);  // "held" is invisible until it commits
  }
  // Writes go on too: another registration and a selection.
  EXPECT_TRUE(server_->RegisterNpy("other", root_ + "/good.npy").ok());
  EXPECT_EQ(SelectState("other"), v1::SUCCEEDED);
  EXPECT_EQ(server_->RegisterNpy("held", root_ + "/good.npy").error_code(), grpc::ALREADY_EXISTS);
  release.Notify();
  EXPECT_TRUE(held.get().ok());
  server_->app().core().SetRegistrationHookForTest(nullptr);
}

TEST_F(RegressionTest, SelectingFromADatasetWhoseItemsAllFailedIsAPreconditionError) {
  ASSERT_TRUE(WriteFileAtomically(root_ + "/missing.txt", "nope1.png\nnope2.png\n").ok());
  v1::RegisterDatasetRequest r;
  r.set_name("gone");
  r.mutable_manifest()->set_path(root_ + "/missing.txt");
  grpc::ClientContext c;
  v1::Dataset d;
  ASSERT_TRUE(server_->stub()->RegisterDataset(&c, r, &d).ok());
  EXPECT_EQ(d.num_failed(), 2);
  grpc::Status submit;
  SelectState("gone", "random", &submit);
  EXPECT_EQ(submit.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(submit.error_message().find("nothing to select from"), std::string::npos);
}

TEST_F(RegressionTest, PathsOutsideTheRootsGetOneAnswerThatRevealsNothing) {
  // A symlink inside the roots that points outside, an existing and a missing path
  // outside: the same code and message shape, never the symlink's target.
  fs::create_directory_symlink("/usr/share", root_ + "/escape");
  v1::Dataset d;
  grpc::Status via_link = server_->Register("link", root_ + "/escape", &d);
  grpc::Status existing = server_->Register("e", "/usr/share", &d);
  grpc::Status missing = server_->Register("m", "/usr/share/no-such-dir-xyz", &d);
  for (const grpc::Status* s : {&via_link, &existing, &missing}) {
    EXPECT_EQ(s->error_code(), grpc::PERMISSION_DENIED) << s->error_message();
    EXPECT_NE(s->error_message().find("is outside the allowed roots"), std::string::npos)
        << s->error_message();
  }
  EXPECT_EQ(via_link.error_message().find("/usr/share"), std::string::npos)
      << via_link.error_message();
}

TEST(ServerStartTest, TwoServersCannotShareAPortOrADataDir) {
  std::string root = MakeTempDir("two");
  Server a(root, "");
  core::Metrics m;
  core::ServerOptions o;
  o.data_dir = root + "/data";
  auto same_dir = app::App::Start(o, "127.0.0.1:0", &m);
  ASSERT_FALSE(same_dir.ok());
  EXPECT_EQ(same_dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(same_dir.status().message().find("in use by another updp-server"), std::string::npos)
      << same_dir.status();
  o.data_dir = root + "/data2";
  auto same_port = app::App::Start(o, "127.0.0.1:" + std::to_string(a.app().port()), &m);
  ASSERT_FALSE(same_port.ok());
  EXPECT_EQ(same_port.status().code(), absl::StatusCode::kUnavailable) << same_port.status();
  a.Stop();
  // Once the first is gone, its data dir opens.
  o.data_dir = root + "/data";
  auto after = app::App::Start(o, "127.0.0.1:0", &m);
  EXPECT_TRUE(after.ok()) << after.status();
}

TEST(ServerStartTest, NotServingAndNoModelCallsUntilTheModelIsLoaded) {
  std::string root = MakeTempDir("loading");
  std::string model = TinyModel(root);
  WriteImages(root + "/images", 0, 4);
  core::ServerOptions o;
  o.data_dir = root + "/data";
  o.model_dir = model;
  o.allowed_roots = {root};
  core::Metrics m;
  Note listening, load;
  int port = 0;
  app::AppOptions ao;
  ao.before_model_load = [&](int p) {
    port = p;
    listening.Notify();
    load.Wait(300);
  };
  auto started =
      std::async(std::launch::async, [&] { return app::App::Start(o, "127.0.0.1:0", &m, ao); });
  ASSERT_TRUE(listening.Wait());
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  auto stub = v1::Updp::NewStub(channel);
  {
    grpc::ClientContext c;
    grpc::health::v1::HealthCheckResponse h;
    ASSERT_TRUE(health->Check(&c, grpc::health::v1::HealthCheckRequest(), &h).ok());
    EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  {
    grpc::ClientContext c;
    v1::RegisterDatasetRequest r;
    r.set_name("fm");
    r.mutable_images()->set_path(root + "/images");
    v1::Dataset d;
    ASSERT_TRUE(stub->RegisterDataset(&c, r, &d).ok());  // needs no model
  }
  {
    grpc::ClientContext c;
    v1::StartEmbeddingRequest r;
    r.set_dataset("fm");
    v1::Job j;
    grpc::Status s = stub->StartEmbedding(&c, r, &j);
    EXPECT_EQ(s.error_code(), grpc::UNAVAILABLE) << s.error_message();
  }
  {
    grpc::ClientContext c;
    v1::ImportPromptRequest r;
    r.set_name("p");
    r.set_artifact("not even safetensors");
    v1::Prompt p;
    EXPECT_EQ(stub->ImportPrompt(&c, r, &p).error_code(), grpc::UNAVAILABLE);
  }
  load.Notify();
  auto app = started.get();
  ASSERT_TRUE(app.ok()) << app.status();
  {
    grpc::ClientContext c;
    grpc::health::v1::HealthCheckResponse h;
    ASSERT_TRUE(health->Check(&c, grpc::health::v1::HealthCheckRequest(), &h).ok());
    EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  grpc::ClientContext c;
  v1::StartEmbeddingRequest r;
  r.set_dataset("fm");
  v1::Job j;
  EXPECT_TRUE(stub->StartEmbedding(&c, r, &j).ok());
  EXPECT_TRUE((*app)->Shutdown(60000));
}

TEST(ServerStartTest, HalfDoneRegistrationsAndDeletionsAreFinishedAtStart) {
  std::string root = MakeTempDir("recover");
  {
    auto store = core::Store::Open(root + "/data");
    ASSERT_TRUE(store.ok());
    core::DatasetInfo d;
    d.name = "half";
    d.source_kind = core::SourceKind::kEmbeddings;
    ASSERT_TRUE((*store)->ReserveDataset(d).ok());  // the process died while registering
    fs::create_directories(root + "/data/features/half/embeddings");
    ASSERT_TRUE(
        WriteFileAtomically(root + "/data/features/half/embeddings/chunk_000000.safetensors", "x")
            .ok());
    // And a deletion that stopped after its mark, with a job and its folder.
    core::DatasetInfo g;
    g.name = "going";
    g.source_kind = core::SourceKind::kManifest;
    ASSERT_TRUE((*store)->ReserveDataset(g).ok());
    ASSERT_TRUE((*store)->CommitDataset("going", "/m", 0, {}, "", {}).ok());
    auto job = (*store)->CreateJob("going", core::EmbedParams{});
    ASSERT_TRUE(job.ok());
    ASSERT_TRUE((*store)
                    ->Transition(job->id, core::JobState::kQueued, core::JobState::kCancelled, *job)
                    .ok());
    ASSERT_TRUE((*store)->BeginDeleteDataset("going").ok());
    fs::create_directories(root + "/data/jobs/" + job->id);
    fs::create_directories(root + "/data/features/going/image");
    fs::create_directories(root + "/data/prompts");
    ASSERT_TRUE(WriteFileAtomically(root + "/data/prompts/p.job-9.safetensors", "orphan").ok());
  }
  Server server(root, "");
  EXPECT_FALSE(fs::exists(root + "/data/features/half"));
  EXPECT_FALSE(fs::exists(root + "/data/features/going"));
  EXPECT_FALSE(fs::exists(root + "/data/jobs/job-1"));
  {
    grpc::ClientContext c;
    v1::GetJobRequest r;
    r.set_job_id("job-1");
    v1::Job j;
    EXPECT_EQ(server.stub()->GetJob(&c, r, &j).error_code(), grpc::NOT_FOUND);  // rows went too
  }
  EXPECT_FALSE(fs::exists(root + "/data/prompts/p.job-9.safetensors"));
  auto x = torch::randn({5, 4});
  ASSERT_TRUE(model::WriteNpy(root + "/e.npy", x).ok());
  v1::RegisterDatasetRequest r;
  r.set_name("half");
  r.mutable_embeddings()->set_path(root + "/e.npy");
  grpc::ClientContext c;
  v1::Dataset d;
  EXPECT_TRUE(server.stub()->RegisterDataset(&c, r, &d).ok());
  server.Stop();
}

}  // namespace
}  // namespace updp::testing
