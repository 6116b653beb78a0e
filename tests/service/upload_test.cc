// UploadEmbeddings on a real in-process server over a real channel: float16, float32
// and float64 rows read back from the feature chunks, ids, every refusal (nothing
// registered, nothing left in data_dir/uploads), a broken stream, a caller that
// leaves after the stream was complete, stale files at start-up; and float64 .npy
// files through RegisterDataset. --allowed_roots leaves data_dir out, so the upload's
// own files are registered past them.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <set>
#include <thread>

#include "server/model/npy.h"
#include "server/model/safetensors.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

using Request = v1::UploadEmbeddingsRequest;

Request Header(const std::string& name, int64_t rows, int32_t dim, v1::EmbeddingDType dtype,
               bool has_ids = false) {
  Request r;
  auto* h = r.mutable_header();
  h->set_name(name);
  h->set_rows(rows);
  h->set_dim(dim);
  h->set_dtype(dtype);
  h->set_has_ids(has_ids);
  return r;
}

// The rows of `t` (contiguous bytes, as numpy's tobytes()) and their ids.
Request Chunk(const torch::Tensor& t, const std::vector<std::string>& ids = {}) {
  Request r;
  torch::Tensor c = t.contiguous();
  r.mutable_chunk()->set_data(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  for (const auto& id : ids) r.mutable_chunk()->add_ids(id);
  return r;
}

Request RawChunk(const std::string& bytes, const std::vector<std::string>& ids = {}) {
  Request r;
  r.mutable_chunk()->set_data(bytes);
  for (const auto& id : ids) r.mutable_chunk()->add_ids(id);
  return r;
}

class UploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("upload");
    fs::create_directories(root_ + "/in");
    server_ = std::make_unique<Server>(root_, "");  // imports need no model
    Restart();
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  // Data in root/data, allowed roots only root/in.
  void Restart() {
    server_->Stop();
    server_->options().allowed_roots = {root_ + "/in"};
    server_->Start();
  }
  std::string Uploads() const { return root_ + "/data/uploads"; }
  std::vector<std::string> UploadFiles() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(Uploads())) out.push_back(e.path().string());
    return out;
  }

  grpc::Status Upload(const std::vector<Request>& msgs, v1::Dataset* out) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    auto w = server_->stub()->UploadEmbeddings(&c, out);
    for (const auto& m : msgs) {
      if (!w->Write(m)) break;  // the server has answered already
    }
    w->WritesDone();
    return w->Finish();
  }
  grpc::Status Upload(const std::vector<Request>& msgs) {
    v1::Dataset d;
    return Upload(msgs, &d);
  }
  grpc::Status GetDataset(const std::string& name, v1::Dataset* out) {
    grpc::ClientContext c;
    v1::GetDatasetRequest r;
    r.set_name(name);
    return server_->stub()->GetDataset(&c, r, out);
  }
  std::vector<std::string> ItemIds(const std::string& name) {
    grpc::ClientContext c;
    v1::ListItemsRequest r;
    r.set_dataset(name);
    v1::ListItemsResponse resp;
    EXPECT_TRUE(server_->stub()->ListItems(&c, r, &resp).ok());
    std::vector<std::string> ids;
    for (const auto& it : resp.items()) ids.push_back(it.item_id());
    return ids;
  }
  // The dataset's features, all chunks in row order.
  torch::Tensor Features(const std::string& name) {
    const std::string dir = root_ + "/data/features/" + name + "/embeddings/";
    std::vector<torch::Tensor> parts;
    for (int c = 0; fs::exists(dir + "chunk_00000" + std::to_string(c) + ".safetensors"); ++c) {
      auto f =
          model::SafetensorsFile::Open(dir + "chunk_00000" + std::to_string(c) + ".safetensors");
      EXPECT_TRUE(f.ok()) << f.status();
      if (f.ok()) parts.push_back(*(*f)->Get("features"));
    }
    return parts.empty() ? torch::Tensor() : torch::cat(parts);
  }
  // Waits until the server has recorded `n` UploadEmbeddings calls that ended with
  // `code`: it removes the upload's files before it answers, and records the call
  // after. Polls a condition the server reaches by itself; no timing is assumed.
  bool WaitForCalls(const std::string& code, int n) {
    const std::string line = "updp_grpc_requests_total{code=\"" + code +
                             "\",method=\"UploadEmbeddings\"} " + std::to_string(n) + "\n";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (server_->metrics().Serialize().find(line) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  }
  // The refusal leaves no dataset and no file behind.
  void ExpectNothingLeft(const std::string& name) {
    v1::Dataset d;
    EXPECT_EQ(GetDataset(name, &d).error_code(), grpc::NOT_FOUND) << name;
    EXPECT_TRUE(UploadFiles().empty()) << UploadFiles().front();
  }

  std::string root_;
  std::unique_ptr<Server> server_;
};

TEST_F(UploadTest, EachDtypeIsStoredAndReadsBack) {
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({50, 8}, torch::kFloat64);
  const struct {
    v1::EmbeddingDType dtype;
    torch::ScalarType sent, stored;
  } cases[] = {{v1::EMBEDDING_DTYPE_FLOAT16, torch::kFloat16, torch::kFloat16},
               {v1::EMBEDDING_DTYPE_FLOAT32, torch::kFloat32, torch::kFloat32},
               {v1::EMBEDDING_DTYPE_FLOAT64, torch::kFloat64, torch::kFloat32}};
  for (const auto& c : cases) {
    const std::string name = std::string("up-") + c10::toString(c.sent);
    SCOPED_TRACE(name);
    const torch::Tensor sent = x.to(c.sent);
    v1::Dataset d;
    // Uneven chunks, an empty one among them.
    const grpc::Status s = Upload({Header(name, 50, 8, c.dtype), Chunk(sent.slice(0, 0, 20)),
                                   Chunk(sent.slice(0, 20, 20)), Chunk(sent.slice(0, 20, 50))},
                                  &d);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(d.name(), name);
    EXPECT_EQ(d.state(), v1::DATASET_STATE_READY);
    EXPECT_EQ(d.num_items(), 50);
    EXPECT_EQ(d.source_kind(), v1::SOURCE_KIND_EMBEDDINGS);
    EXPECT_EQ(d.source_path(), "(uploaded)");
    ASSERT_EQ(d.feature_sources_size(), 1);
    const torch::Tensor back = Features(name);
    ASSERT_TRUE(back.defined());
    EXPECT_EQ(back.scalar_type(), c.stored);
    EXPECT_TRUE(torch::equal(back, sent.to(c.stored)));
    const std::vector<std::string> ids = ItemIds(name);
    ASSERT_EQ(ids.size(), 50u);
    EXPECT_EQ(ids.front(), "0");
    EXPECT_EQ(ids.back(), "49");
    EXPECT_TRUE(UploadFiles().empty());  // removed before the answer
  }
}

TEST_F(UploadTest, IdsAreKeptInOrderAndSelectable) {
  torch::manual_seed(1);
  const torch::Tensor centres = torch::randn({3, 4});
  const torch::Tensor x = centres.repeat_interleave(10, 0) + 0.01 * torch::randn({30, 4});
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) ids.push_back("img-" + std::to_string(i) + ".png");
  v1::Dataset d;
  const grpc::Status s =
      Upload({Header("ided", 30, 4, v1::EMBEDDING_DTYPE_FLOAT32, true),
              Chunk(x.slice(0, 0, 7), std::vector<std::string>(ids.begin(), ids.begin() + 7)),
              Chunk(x.slice(0, 7, 30), std::vector<std::string>(ids.begin() + 7, ids.end()))},
             &d);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ItemIds("ided"), ids);
  v1::GetSelectionResponse resp;
  ASSERT_TRUE(server_->SelectAndGet("ided", "typiclust", 3, &resp));
  std::set<int> blobs;
  for (const auto& it : resp.items()) blobs.insert(std::stoi(it.item_id().substr(4)) / 10);
  EXPECT_EQ(blobs.size(), 3u);  // one pick per cluster: rows and ids stayed together
}

TEST_F(UploadTest, RefusalsNameTheFieldAndLeaveNothing) {
  const auto f32 = v1::EMBEDDING_DTYPE_FLOAT32;
  const torch::Tensor four = torch::ones({4, 256});
  torch::Tensor nan = torch::ones({5, 3});
  nan[2][1] = std::numeric_limits<float>::quiet_NaN();
  torch::Tensor inf16 = torch::ones({3, 2}, torch::kFloat16);
  inf16[1][0] = std::numeric_limits<float>::infinity();
  torch::Tensor big = torch::ones({4, 2}, torch::kFloat64);
  big[3][1] = 1e300;
  Request empty_message;
  const struct {
    const char* what;
    std::vector<Request> msgs;
    grpc::StatusCode code;
    std::string message;
  } cases[] = {
      {"chunk first", {Chunk(four)}, grpc::INVALID_ARGUMENT, "header: must be the first message"},
      {"no messages", {}, grpc::INVALID_ARGUMENT, "header: must be the first message"},
      {"two headers",
       {Header("x", 4, 256, f32), Header("x", 4, 256, f32)},
       grpc::INVALID_ARGUMENT,
       "header: only the first message may be the header; message 2 is another"},
      {"neither",
       {Header("x", 4, 256, f32), empty_message},
       grpc::INVALID_ARGUMENT,
       "message 2 has neither a header nor a chunk"},
      {"bad name", {Header("../x", 4, 256, f32)}, grpc::INVALID_ARGUMENT, "header.name"},
      {"no rows",
       {Header("x", 0, 256, f32)},
       grpc::INVALID_ARGUMENT,
       "header.rows: must be positive"},
      {"no dim", {Header("x", 4, 0, f32)}, grpc::INVALID_ARGUMENT, "header.dim: must be positive"},
      {"no dtype",
       {Header("x", 4, 256, v1::EMBEDDING_DTYPE_UNSPECIFIED)},
       grpc::INVALID_ARGUMENT,
       "header.dtype: must be"},
      {"too large",
       {Header("x", int64_t{1} << 40, 1024, f32)},
       grpc::RESOURCE_EXHAUSTED,
       "(--max_upload_bytes)"},
      {"partial row",
       {Header("x", 4, 256, f32), RawChunk(std::string(1000, '\0'))},
       grpc::INVALID_ARGUMENT,
       "chunk.data: 1000 bytes is not a whole number of rows of 256 float32 values"},
      {"ids for rows",
       {Header("x", 4, 256, f32, true), Chunk(four, {"a", "b", "c"})},
       grpc::INVALID_ARGUMENT,
       "chunk.ids: 3 ids for 4 rows"},
      {"ids unannounced",
       {Header("x", 4, 256, f32), Chunk(four, {"a", "b", "c", "d"})},
       grpc::INVALID_ARGUMENT,
       "chunk.ids: 4 ids, but the header's has_ids is false"},
      {"empty id",
       {Header("x", 4, 256, f32, true), Chunk(four, {"a", "b", "", "d"})},
       grpc::INVALID_ARGUMENT,
       "chunk.ids: the id of row 2 is empty"},
      {"line break",
       {Header("x", 4, 256, f32, true), Chunk(four, {"a", "b\nc", "c", "d"})},
       grpc::INVALID_ARGUMENT,
       "chunk.ids: the id of row 1 contains a line break"},
      {"padded id",
       {Header("x", 4, 256, f32, true), Chunk(four, {"a", "b", "c", "d "})},
       grpc::INVALID_ARGUMENT,
       "chunk.ids: the id of row 3 has leading or trailing whitespace"},
      {"fewer rows",
       {Header("x", 100, 3, f32), Chunk(torch::ones({60, 3})), Chunk(torch::ones({30, 3}))},
       grpc::INVALID_ARGUMENT,
       "rows: the header said 100, the stream carried 90"},
      {"more rows",
       {Header("x", 100, 3, f32), Chunk(torch::ones({60, 3})), Chunk(torch::ones({50, 3}))},
       grpc::INVALID_ARGUMENT,
       "rows: the header said 100, the stream carried more (110 so far)"},
      // Rows are numbered in the whole stream.
      {"NaN",
       {Header("x", 8, 3, f32), Chunk(torch::ones({3, 3})), Chunk(nan)},
       grpc::INVALID_ARGUMENT,
       "chunk.data: row 5 contains NaN or Inf"},
      {"Inf float16",
       {Header("x", 3, 2, v1::EMBEDDING_DTYPE_FLOAT16), Chunk(inf16)},
       grpc::INVALID_ARGUMENT,
       "chunk.data: row 1 contains NaN or Inf"},
      {"float64 range",
       {Header("x", 4, 2, v1::EMBEDDING_DTYPE_FLOAT64), Chunk(big)},
       grpc::INVALID_ARGUMENT,
       "chunk.data: row 3 has a value outside the float32 range"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const grpc::Status s = Upload(c.msgs);
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_NE(s.error_message().find(c.message), std::string::npos) << s.error_message();
    ExpectNothingLeft("x");
  }
}

TEST_F(UploadTest, TakenNameAndDuplicateIdsAreAlreadyExists) {
  ASSERT_TRUE(
      Upload({Header("taken", 2, 2, v1::EMBEDDING_DTYPE_FLOAT32), Chunk(torch::ones({2, 2}))})
          .ok());
  grpc::Status s =
      Upload({Header("taken", 3, 2, v1::EMBEDDING_DTYPE_FLOAT32), Chunk(torch::ones({3, 2}))});
  EXPECT_EQ(s.error_code(), grpc::ALREADY_EXISTS);
  EXPECT_EQ(s.error_message(), "header.name: dataset 'taken' already exists");
  v1::Dataset d;
  ASSERT_TRUE(GetDataset("taken", &d).ok());
  EXPECT_EQ(d.num_items(), 2);  // untouched
  EXPECT_TRUE(UploadFiles().empty());

  s = Upload({Header("dup", 3, 2, v1::EMBEDDING_DTYPE_FLOAT32, true),
              Chunk(torch::ones({3, 2}), {"a", "b", "a"})});
  EXPECT_EQ(s.error_code(), grpc::ALREADY_EXISTS);
  EXPECT_NE(s.error_message().find("chunk.ids: duplicate item id 'a'"), std::string::npos)
      << s.error_message();
  ExpectNothingLeft("dup");
}

// A name taken between the header and the end of the stream (by a registration still
// running, which the header's check cannot see) is refused at the end.
TEST_F(UploadTest, ANameTakenDuringTheStreamIsAlreadyExists) {
  ASSERT_TRUE(model::WriteNpy(root_ + "/in/e.npy", torch::ones({3, 2})).ok());
  server_->gate().Arm([](const core::JobInfo& j) {
    return j.kind == core::JobKind::kRegister && j.dataset == "same";
  });
  v1::RegisterDatasetRequest r;
  r.set_name("same");
  r.mutable_embeddings()->set_path(root_ + "/in/e.npy");
  r.set_async(true);
  grpc::ClientContext c;
  v1::Dataset d;
  ASSERT_TRUE(server_->stub()->RegisterDataset(&c, r, &d).ok());
  ASSERT_TRUE(server_->gate().WaitHeld());
  const grpc::Status s =
      Upload({Header("same", 2, 2, v1::EMBEDDING_DTYPE_FLOAT32), Chunk(torch::ones({2, 2}))});
  EXPECT_EQ(s.error_code(), grpc::ALREADY_EXISTS);
  EXPECT_EQ(s.error_message(), "header.name: dataset 'same' is being registered by another call");
  EXPECT_TRUE(UploadFiles().empty());
  server_->gate().Release();
  EXPECT_EQ(server_->WaitJob(d.registration_job_id()).state(), v1::SUCCEEDED);
  ASSERT_TRUE(GetDataset("same", &d).ok());
  EXPECT_EQ(d.num_items(), 3);  // the other registration's
}

// A stream that breaks off half way (the client cancels) registers nothing and
// leaves no file.
TEST_F(UploadTest, BrokenStreamLeavesNothing) {
  grpc::ClientContext c;
  v1::Dataset d;
  auto w = server_->stub()->UploadEmbeddings(&c, &d);
  ASSERT_TRUE(w->Write(Header("broken", 10, 4, v1::EMBEDDING_DTYPE_FLOAT32)));
  ASSERT_TRUE(w->Write(Chunk(torch::ones({4, 4}))));
  // The server has begun writing: its temporary .npy is there.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (UploadFiles().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(UploadFiles().size(), 1u);
  c.TryCancel();
  EXPECT_EQ(w->Finish().error_code(), grpc::CANCELLED);
  ASSERT_TRUE(WaitForCalls("CANCELLED", 1));
  ExpectNothingLeft("broken");
}

// Once the stream is complete the REGISTER job does not depend on the call (as with
// RegisterDataset): a caller that leaves gets CANCELLED, the job registers the
// dataset, and the files go when the job ends, not before.
TEST_F(UploadTest, CallerLeavingAfterTheStreamDoesNotStopTheJob) {
  server_->gate().Arm([](const core::JobInfo& j) {
    return j.kind == core::JobKind::kRegister && j.dataset == "late";
  });
  grpc::ClientContext c;
  v1::Dataset d;
  auto w = server_->stub()->UploadEmbeddings(&c, &d);
  ASSERT_TRUE(w->Write(Header("late", 5, 2, v1::EMBEDDING_DTYPE_FLOAT32, true)));
  ASSERT_TRUE(w->Write(Chunk(torch::ones({5, 2}), {"a", "b", "c", "d", "e"})));
  ASSERT_TRUE(w->WritesDone());
  ASSERT_TRUE(server_->gate().WaitHeld());
  const std::string job = server_->gate().held().id;
  c.TryCancel();
  EXPECT_EQ(w->Finish().error_code(), grpc::CANCELLED);
  ASSERT_TRUE(WaitForCalls("CANCELLED", 1));
  EXPECT_EQ(UploadFiles().size(), 2u);  // the .npy and the ids, still read by the job
  server_->gate().Release();
  EXPECT_EQ(server_->WaitJob(job).state(), v1::SUCCEEDED);
  EXPECT_TRUE(UploadFiles().empty());
  EXPECT_EQ(ItemIds("late"), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
}

// The upload's own path is not one a client may name: RegisterDataset still checks
// --allowed_roots.
TEST_F(UploadTest, ClientsCannotNameTheUploadFolder) {
  std::ofstream(Uploads() + "/mine.npy") << "x";
  grpc::Status s = server_->RegisterNpy("sneaky", Uploads() + "/mine.npy");
  EXPECT_EQ(s.error_code(), grpc::PERMISSION_DENIED) << s.error_message();
}

TEST_F(UploadTest, StartUpRemovesStaleUploadFiles) {
  std::ofstream(Uploads() + "/crashed.123.npy") << "half an upload";
  std::ofstream(Uploads() + "/crashed.123.ids") << "a\n";
  Restart();
  EXPECT_TRUE(UploadFiles().empty());
}

// numpy's default dtype through RegisterDataset: float64 stored as float32; a value
// float32 cannot hold, or NaN, is refused naming the file and the row.
TEST_F(UploadTest, Float64NpyRegistersAndBadValuesNameFileAndRow) {
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({12, 3}, torch::kFloat64);
  const std::string ok_path = root_ + "/in/ok64.npy";
  ASSERT_TRUE(model::WriteNpy(ok_path, x).ok());
  ASSERT_TRUE(server_->RegisterNpy("ok64", ok_path).ok());
  EXPECT_TRUE(torch::equal(Features("ok64"), x.to(torch::kFloat32)));

  torch::Tensor big = x.clone();
  big[7][2] = 1e40;
  const std::string big_path = root_ + "/in/big64.npy";
  ASSERT_TRUE(model::WriteNpy(big_path, big).ok());
  grpc::Status s = server_->RegisterNpy("big64", big_path);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find(big_path + ": row 7 has a value outside the float32 range"),
            std::string::npos)
      << s.error_message();

  torch::Tensor nan = x.clone();
  nan[4][0] = std::numeric_limits<double>::quiet_NaN();
  const std::string nan_path = root_ + "/in/nan64.npy";
  ASSERT_TRUE(model::WriteNpy(nan_path, nan).ok());
  s = server_->RegisterNpy("nan64", nan_path);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find(nan_path + ": row 4 contains NaN or Inf"), std::string::npos)
      << s.error_message();
  v1::Dataset d;
  EXPECT_EQ(GetDataset("big64", &d).error_code(), grpc::NOT_FOUND);
  EXPECT_EQ(GetDataset("nan64", &d).error_code(), grpc::NOT_FOUND);
}

}  // namespace
}  // namespace updp::testing
