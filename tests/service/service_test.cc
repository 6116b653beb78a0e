// Every RPC through a real in-process server on a loopback port.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <grpcpp/generic/generic_stub.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "server/model/npy.h"
#include "server/model/safetensors.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("svc");
    images_ = root_ + "/images";
    WriteImages(images_, 0, 120);
    server_ = std::make_unique<Server>(root_, TinyModel(root_));
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  std::string root_, images_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServiceTest, DatasetsJobsSelectionAndPaging) {
  auto* stub = server_->stub();
  v1::Dataset d;
  ASSERT_TRUE(server_->Register("fm", images_, &d).ok());
  EXPECT_EQ(d.num_items(), 120);
  EXPECT_EQ(d.source_kind(), v1::SOURCE_KIND_IMAGES);
  {
    grpc::ClientContext c;
    v1::ListDatasetsResponse r;
    ASSERT_TRUE(stub->ListDatasets(&c, {}, &r).ok());
    ASSERT_EQ(r.datasets_size(), 1);
    EXPECT_EQ(r.datasets(0).name(), "fm");
  }
  v1::Job embed = server_->Embed("fm");
  EXPECT_EQ(embed.kind(), v1::EMBED);
  EXPECT_EQ(server_->WaitJob(embed.job_id()).state(), v1::SUCCEEDED);
  {
    grpc::ClientContext c;
    v1::GetDatasetRequest r;
    r.set_name("fm");
    ASSERT_TRUE(stub->GetDataset(&c, r, &d).ok());
    ASSERT_EQ(d.feature_sources_size(), 1);
    EXPECT_EQ(d.feature_sources(0), "image");
  }
  v1::SelectRequest sr;
  sr.set_dataset("fm");
  sr.set_strategy("kmeans");
  sr.set_budget(7);
  sr.set_seed(1);
  sr.add_labeled_ids("00003.png");
  sr.add_labeled_ids("ghost.png");  // not an item: ignored and counted (not strict)
  v1::Job sel;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(stub->Select(&c, sr, &sel).ok());
  }
  EXPECT_EQ(sel.state(), v1::QUEUED);
  {
    const auto params = nlohmann::json::parse(sel.parameters_json());
    EXPECT_EQ(params["labeled_ids"], nlohmann::json::array({"00003.png"}));
    EXPECT_EQ(params["labeled_unknown"], 1);
    EXPECT_EQ(params["labeled_unknown_first"], nlohmann::json::array({"ghost.png"}));
  }
  const v1::Job sel_done = server_->WaitJob(sel.job_id());
  EXPECT_EQ(sel_done.state(), v1::SUCCEEDED);
  {
    const auto result = nlohmann::json::parse(sel_done.result_json());
    EXPECT_EQ(result["labeled_excluded"], 1);
    EXPECT_EQ(result["labeled_unknown"], 1);
  }
  // Paged reads: 3 + 3 + 1.
  std::set<std::string> ids;
  std::string token;
  int pages = 0;
  do {
    grpc::ClientContext c;
    v1::GetSelectionRequest r;
    r.set_job_id(sel.job_id());
    r.set_page_size(3);
    r.set_page_token(token);
    v1::GetSelectionResponse resp;
    ASSERT_TRUE(stub->GetSelection(&c, r, &resp).ok());
    EXPECT_EQ(resp.total(), 7);
    EXPECT_EQ(resp.strategy(), "kmeans");
    for (const auto& it : resp.items()) {
      EXPECT_EQ(it.rank(), static_cast<int64_t>(ids.size()) + 1);
      EXPECT_EQ(it.path(), images_ + "/" + it.item_id());
      ids.insert(it.item_id());
    }
    token = resp.next_page_token();
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(ids.size(), 7u);
  EXPECT_FALSE(ids.count("00003.png"));
  {
    grpc::ClientContext c;
    v1::ListJobsRequest r;
    r.set_dataset("fm");
    r.set_state(v1::SUCCEEDED);
    v1::ListJobsResponse resp;
    ASSERT_TRUE(stub->ListJobs(&c, r, &resp).ok());
    EXPECT_EQ(resp.jobs_size(), 3);  // REGISTER, EMBED, SELECT
    EXPECT_EQ(resp.jobs(2).kind(), v1::REGISTER);
  }
  {  // Cancel of a finished job is a no-op; resuming it is a precondition failure.
    grpc::ClientContext c;
    v1::CancelJobRequest r;
    r.set_job_id(sel.job_id());
    v1::Job j;
    ASSERT_TRUE(stub->CancelJob(&c, r, &j).ok());
    EXPECT_EQ(j.state(), v1::SUCCEEDED);
    grpc::ClientContext c2;
    v1::ResumeJobRequest rr;
    rr.set_job_id(sel.job_id());
    EXPECT_EQ(stub->ResumeJob(&c2, rr, &j).error_code(), grpc::FAILED_PRECONDITION);
  }
  {  // A second EMBED job reuses every chunk.
    v1::Job again = server_->Embed("fm");
    v1::Job done = server_->WaitJob(again.job_id());
    EXPECT_EQ(done.state(), v1::SUCCEEDED);
    EXPECT_NE(done.result_json().find("\"chunks_computed\":0"), std::string::npos)
        << done.result_json();
  }
  {
    grpc::ClientContext c;
    v1::DeleteDatasetRequest r;
    r.set_name("fm");
    v1::DeleteDatasetResponse resp;
    ASSERT_TRUE(stub->DeleteDataset(&c, r, &resp).ok());
    grpc::ClientContext c2;
    v1::GetDatasetRequest g;
    g.set_name("fm");
    EXPECT_EQ(stub->GetDataset(&c2, g, &d).error_code(), grpc::NOT_FOUND);
    EXPECT_FALSE(fs::exists(root_ + "/data/features/fm"));
  }
}

TEST_F(ServiceTest, HealthAndReflection) {
  auto health = grpc::health::v1::Health::NewStub(server_->channel());
  grpc::ClientContext c;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("updp.v1.Updp");
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&c, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // Reflection, spoken as grpcurl does: ServerReflectionInfo with list_services. The
  // message types come from the reflection library linked into the server.
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  const auto* req_desc =
      pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionRequest");
  const auto* resp_desc =
      pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionResponse");
  ASSERT_NE(req_desc, nullptr);
  ASSERT_NE(resp_desc, nullptr);
  google::protobuf::DynamicMessageFactory factory;
  std::unique_ptr<google::protobuf::Message> rreq(factory.GetPrototype(req_desc)->New());
  rreq->GetReflection()->SetString(rreq.get(), req_desc->FindFieldByName("list_services"), "");
  grpc::GenericStub generic(server_->channel());
  grpc::CompletionQueue cq;
  grpc::ClientContext rc;
  auto call = generic.PrepareCall(
      &rc, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  auto next = [&](intptr_t want) {
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
  };
  call->StartCall(reinterpret_cast<void*>(1));
  next(1);
  std::string wire = rreq->SerializeAsString();
  grpc::Slice slice(wire);
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  next(2);
  call->WritesDone(reinterpret_cast<void*>(3));
  next(3);
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(4));
  next(4);
  ASSERT_TRUE(ok);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string got;
  for (auto& sl : slices) got.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  std::unique_ptr<google::protobuf::Message> rresp(factory.GetPrototype(resp_desc)->New());
  ASSERT_TRUE(rresp->ParseFromString(got));
  std::string text = rresp->DebugString();
  EXPECT_NE(text.find("updp.v1.Updp"), std::string::npos) << text;
  EXPECT_NE(text.find("grpc.health.v1.Health"), std::string::npos) << text;
  grpc::Status fin;
  call->Finish(&fin, reinterpret_cast<void*>(5));
  next(5);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(ServiceTest, BringYourOwnEmbeddings) {
  torch::manual_seed(0);
  torch::Tensor centres = torch::randn({4, 16});
  torch::Tensor x =
      (centres.repeat_interleave(25, 0) + 0.01 * torch::randn({100, 16})).to(torch::kFloat16);
  ASSERT_TRUE(model::WriteNpy(root_ + "/emb.npy", x).ok());
  std::ofstream ids(root_ + "/ids.txt");
  for (int i = 0; i < 100; ++i) ids << "item-" << i << "\n";
  ids.close();
  v1::RegisterDatasetRequest r;
  r.set_name("byo");
  r.mutable_embeddings()->set_path(root_ + "/emb.npy");
  r.mutable_embeddings()->set_ids_path(root_ + "/ids.txt");
  v1::Dataset d;
  grpc::ClientContext c;
  ASSERT_TRUE(server_->stub()->RegisterDataset(&c, r, &d).ok());
  EXPECT_EQ(d.num_items(), 100);
  ASSERT_EQ(d.feature_sources_size(), 1);
  EXPECT_EQ(d.feature_sources(0), "embeddings");
  {  // No images to embed.
    v1::StartEmbeddingRequest er;
    er.set_dataset("byo");
    grpc::ClientContext ec;
    v1::Job j;
    EXPECT_EQ(server_->stub()->StartEmbedding(&ec, er, &j).error_code(), grpc::FAILED_PRECONDITION);
  }
  v1::GetSelectionResponse resp;
  ASSERT_TRUE(server_->SelectAndGet("byo", "typiclust", 4, &resp));
  std::set<int> blobs;
  for (const auto& it : resp.items()) blobs.insert(std::stoi(it.item_id().substr(5)) / 25);
  EXPECT_EQ(blobs.size(), 4u);  // one pick per cluster
}

// A float64 .npy (numpy's default) is stored as float32, streamed into chunks of at
// most import_chunk_rows rows; selection reads them all.
TEST_F(ServiceTest, Float64EmbeddingsAreImportedInSeveralChunks) {
  server_->Stop();
  server_->options().import_chunk_rows = 30;
  server_->Start();
  torch::manual_seed(0);
  torch::Tensor centres = torch::randn({4, 16}, torch::kFloat64);
  torch::Tensor x =
      centres.repeat_interleave(25, 0) + 0.01 * torch::randn({100, 16}, torch::kFloat64);
  ASSERT_TRUE(model::WriteNpy(root_ + "/emb64.npy", x).ok());
  ASSERT_TRUE(server_->RegisterNpy("byo64", root_ + "/emb64.npy").ok());
  const std::string dir = root_ + "/data/features/byo64/embeddings/";
  torch::Tensor back = torch::empty({0, 16});
  for (int c = 0; c < 4; ++c) {
    auto f = model::SafetensorsFile::Open(dir + "chunk_00000" + std::to_string(c) + ".safetensors");
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ((*f)->tensors().at("features").dtype, "F32");
    back = torch::cat({back, *(*f)->Get("features")});
  }
  EXPECT_FALSE(fs::exists(dir + "chunk_000004.safetensors"));
  EXPECT_TRUE(torch::equal(back, x.to(torch::kFloat32)));
  v1::GetSelectionResponse resp;
  ASSERT_TRUE(server_->SelectAndGet("byo64", "typiclust", 4, &resp));
  std::set<int> blobs;
  for (const auto& it : resp.items()) blobs.insert(std::stoi(it.item_id()) / 25);
  EXPECT_EQ(blobs.size(), 4u);  // one pick per cluster, rows from every chunk
}

// updp_images_embedded_total advances with every batch, not once per chunk: held after
// the first batch (16 of a 64-item chunk), the counter already shows it.
TEST_F(ServiceTest, ImagesEmbeddedAdvancesPerBatch) {
  v1::Dataset d;
  ASSERT_TRUE(server_->Register("fm", images_, &d).ok());
  server_->gate().Arm([](const core::JobInfo& j) {
    return j.state == core::JobState::kRunning && j.progress.stage == "embed" &&
           j.progress.done == 16;
  });
  v1::Job job = server_->Embed("fm");
  ASSERT_TRUE(server_->gate().WaitHeld());
  std::string text = server_->metrics().Serialize();
  EXPECT_NE(text.find("updp_images_embedded_total 16\n"), std::string::npos) << text;
  server_->gate().Release();
  EXPECT_EQ(server_->WaitJob(job.job_id()).state(), v1::SUCCEEDED);
  text = server_->metrics().Serialize();
  EXPECT_NE(text.find("updp_images_embedded_total 120\n"), std::string::npos) << text;
}

TEST_F(ServiceTest, MetricsCountRequestsAndJobs) {
  v1::Dataset d;
  ASSERT_TRUE(server_->Register("fm", images_, &d).ok());
  server_->WaitJob(server_->Embed("fm").job_id());
  std::string text = server_->metrics().Serialize();
  EXPECT_NE(text.find("updp_grpc_requests_total{code=\"OK\",method=\"RegisterDataset\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("updp_jobs_finished_total{kind=\"EMBED\",outcome=\"succeeded\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("updp_images_embedded_total 120"), std::string::npos);
  EXPECT_NE(text.find("process_resident_memory_bytes"), std::string::npos);
}

}  // namespace
}  // namespace updp::testing
