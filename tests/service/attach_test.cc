// Scale-out, in process: ListItems pages, a shard worker's output (RunShard) attached
// with AttachFeatures, and every tampering of that output refused by name with nothing
// committed. The multi-process proof (4 workers, a SIGKILL, byte-identical to EMBED)
// is tests/scale/shard_proof.sh.
#include <fstream>
#include <nlohmann/json.hpp>

#include "server/engine/feature_io.h"
#include "server/engine/shard_embed.h"
#include "server/model/safetensors.h"
#include "server/util/atomic_file.h"
#include "server/util/shard_format.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

using nlohmann::json;

class AttachTest : public ::testing::Test {
 protected:
  static constexpr int kImages = 20, kChunk = 8;  // chunks of 8, 8 and 4 items

  void SetUp() override {
    root_ = MakeTempDir("attach");
    model_ = TinyModel(root_);
    fs::create_directories(root_ + "/images");
    WriteImages(root_ + "/images", 0, kImages);
    server_ = std::make_unique<Server>(root_, model_, kChunk);
    v1::Dataset d;
    ASSERT_TRUE(server_->Register("pool", root_ + "/images", &d).ok());
    ASSERT_EQ(d.num_items(), kImages);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(root_);
  }

  // What `updpctl dataset items` writes, through the same RPC and format functions.
  std::string WriteItemsFile(const std::string& dataset) {
    const std::string path = root_ + "/" + dataset + ".items.jsonl";
    std::ofstream out(path);
    v1::ListItemsRequest req;
    req.set_dataset(dataset);
    req.set_page_size(7);
    bool first = true;
    do {
      grpc::ClientContext c;
      v1::ListItemsResponse r;
      EXPECT_TRUE(server_->stub()->ListItems(&c, req, &r).ok());
      if (first) out << shard::ItemsHeaderLine({dataset, r.total(), r.chunk_size()}) << "\n";
      first = false;
      for (const auto& it : r.items()) {
        out << shard::ItemLine({it.index(), it.item_id(), it.path()}) << "\n";
      }
      req.set_page_token(r.next_page_token());
    } while (!req.page_token().empty());
    return path;
  }

  std::string RunWorker(const std::string& items, int shards) {
    const std::string out = root_ + "/shared";
    for (int i = 0; i < shards; ++i) {
      engine::ShardOptions o;
      o.items_path = items;
      o.out_dir = out;
      o.shards = shards;
      o.shard = i;
      o.batch_size = 16;
      o.model.model_dir = model_;
      auto r = engine::RunShard(o);
      EXPECT_TRUE(r.ok()) << r.status();
    }
    return out;
  }

  // A copy of `dir` changed by `edit`, in a new directory under the roots.
  std::string Tampered(const std::string& dir,
                       const std::function<void(const std::string&)>& edit) {
    const std::string copy = root_ + "/tampered" + std::to_string(++copies_);
    fs::copy(dir, copy, fs::copy_options::recursive);
    edit(copy);
    return copy;
  }

  v1::Job Attach(const std::string& dataset, const std::string& dir, grpc::Status* status) {
    v1::AttachFeaturesRequest r;
    r.set_dataset(dataset);
    r.set_dir(dir);
    grpc::ClientContext c;
    v1::Job j;
    *status = server_->stub()->AttachFeatures(&c, r, &j);
    if (!status->ok()) return j;
    return server_->WaitJob(j.job_id());
  }

  std::vector<std::string> FeatureSources(const std::string& dataset) {
    v1::GetDatasetRequest r;
    r.set_name(dataset);
    grpc::ClientContext c;
    v1::Dataset d;
    EXPECT_TRUE(server_->stub()->GetDataset(&c, r, &d).ok());
    return {d.feature_sources().begin(), d.feature_sources().end()};
  }

  std::string root_, model_;
  int copies_ = 0;
  std::unique_ptr<Server> server_;
};

void EditSidecar(const std::string& dir, int chunk, const std::function<void(json&)>& edit) {
  const std::string path = dir + "/" + shard::SidecarName(chunk);
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  json j = json::parse(*text);
  edit(j);
  ASSERT_TRUE(WriteFileAtomically(path, j.dump()).ok());
}

// Rewrites chunk `chunk` with its index (and rows) changed by `edit`.
void EditChunk(const std::string& dir, int chunk,
               const std::function<void(torch::Tensor&, std::vector<int64_t>&)>& edit) {
  auto f = model::SafetensorsFile::Open(dir + "/" + engine::ChunkName(chunk));
  ASSERT_TRUE(f.ok());
  torch::Tensor features = *(*f)->Get("features");
  torch::Tensor idx = *(*f)->Get("index", torch::kLong);
  std::vector<int64_t> index(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
  edit(features, index);
  f->reset();
  ASSERT_TRUE(engine::WriteChunk(dir, chunk, features, index).ok());
}

TEST_F(AttachTest, ListItemsPagesInIndexOrderWithTheChunkSize) {
  v1::ListItemsRequest req;
  req.set_dataset("pool");
  req.set_page_size(7);
  std::vector<int64_t> seen;
  int pages = 0;
  do {
    grpc::ClientContext c;
    v1::ListItemsResponse r;
    ASSERT_TRUE(server_->stub()->ListItems(&c, req, &r).ok());
    EXPECT_EQ(r.total(), kImages);
    EXPECT_EQ(r.chunk_size(), kChunk);
    for (const auto& it : r.items()) {
      seen.push_back(it.index());
      EXPECT_TRUE(fs::exists(it.path())) << it.path();
    }
    req.set_page_token(r.next_page_token());
    ++pages;
  } while (!req.page_token().empty());
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kImages));
  for (int i = 0; i < kImages; ++i) EXPECT_EQ(seen[i], i);

  grpc::ClientContext c;
  v1::ListItemsResponse r;
  req.set_page_token("x");
  EXPECT_EQ(server_->stub()->ListItems(&c, req, &r).error_code(), grpc::INVALID_ARGUMENT);
  grpc::ClientContext c2;
  req.set_dataset("nope");
  req.clear_page_token();
  EXPECT_EQ(server_->stub()->ListItems(&c2, req, &r).error_code(), grpc::NOT_FOUND);
}

TEST_F(AttachTest, TamperedShardOutputIsRefusedByNameAndNothingIsCommitted) {
  const std::string dir = RunWorker(WriteItemsFile("pool"), /*shards=*/2);
  struct Case {
    const char* name;
    std::function<void(const std::string&)> edit;
    grpc::StatusCode code;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"a missing sidecar", [](const std::string& d) { fs::remove(d + "/chunk_000001.json"); },
       grpc::INVALID_ARGUMENT, "chunk_000001.json: missing: items 8..15"},
      {"a row twice",
       [](const std::string& d) {
         EditChunk(d, 1, [](torch::Tensor&, std::vector<int64_t>& index) { index[1] = index[0]; });
       },
       grpc::INVALID_ARGUMENT, "(index 8) appears twice"},
      {"a row missing",
       [](const std::string& d) {
         EditChunk(d, 2, [](torch::Tensor& f, std::vector<int64_t>& index) {
           f = f.slice(0, 0, f.size(0) - 1).contiguous();
           index.pop_back();
         });
         EditSidecar(d, 2, [](json& j) { j["rows"] = j["rows"].get<int>() - 1; });
       },
       grpc::INVALID_ARGUMENT, "(index 19) has no feature row and is not listed as failed"},
      {"another model",
       [](const std::string& d) {
         EditSidecar(d, 0, [](json& j) { j["model_identity"] = "0123"; });
       },
       grpc::FAILED_PRECONDITION, "embedded with model 0123"},
      {"another dimension",
       [](const std::string& d) { EditSidecar(d, 2, [](json& j) { j["dim"] = 7; }); },
       grpc::INVALID_ARGUMENT, "features of dimension 7"},
      {"other items",
       [](const std::string& d) {
         EditSidecar(d, 1, [](json& j) { j["ids_digest"] = "0000000000000000"; });
       },
       grpc::INVALID_ARGUMENT, "are not this dataset's"},
      {"a chunk beyond the dataset",
       [](const std::string& d) {
         fs::copy_file(d + "/chunk_000002.safetensors", d + "/chunk_000003.safetensors");
       },
       grpc::INVALID_ARGUMENT, "chunk_000003.safetensors: beyond the dataset's 3 chunks"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    grpc::Status st;
    const v1::Job j = Attach("pool", Tampered(dir, c.edit), &st);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(j.state(), v1::FAILED);
    EXPECT_EQ(j.error_code(), static_cast<int>(c.code)) << j.error();
    EXPECT_NE(j.error().find(c.message), std::string::npos) << j.error();
    EXPECT_TRUE(FeatureSources("pool").empty()) << "a refused attach committed features";
  }

  // The untouched output attaches, in place, and selection reads it.
  grpc::Status st;
  const v1::Job ok = Attach("pool", dir, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(ok.state(), v1::SUCCEEDED) << ok.error();
  EXPECT_EQ(json::parse(ok.result_json())["feature_rows"], kImages);
  EXPECT_EQ(FeatureSources("pool"), std::vector<std::string>{"image"});
  EXPECT_FALSE(fs::exists(root_ + "/data/features/pool/image")) << "attach copied the chunks";
  v1::GetSelectionResponse sel;
  ASSERT_TRUE(server_->SelectAndGet("pool", "kmeans", 5, &sel));
  EXPECT_EQ(sel.items_size(), 5);

  // Attached once: a second attach (or an EMBED's chunks) is refused at the door.
  const v1::Job again = Attach("pool", dir, &st);
  EXPECT_EQ(st.error_code(), grpc::FAILED_PRECONDITION) << st.error_message();
  // Deleting the dataset leaves the shared files alone.
  v1::DeleteDatasetRequest dr;
  dr.set_name("pool");
  grpc::ClientContext dc;
  v1::DeleteDatasetResponse dresp;
  ASSERT_TRUE(server_->stub()->DeleteDataset(&dc, dr, &dresp).ok());
  EXPECT_TRUE(fs::exists(dir + "/chunk_000000.safetensors"));
}

TEST_F(AttachTest, AttachChecksTheDirectoryAtTheDoor) {
  grpc::Status st;
  Attach("pool", "/etc", &st);
  EXPECT_EQ(st.error_code(), grpc::PERMISSION_DENIED) << st.error_message();
  Attach("pool", root_ + "/images/00000.png", &st);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  Attach("pool", "", &st);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  Attach("nope", root_, &st);
  EXPECT_EQ(st.error_code(), grpc::NOT_FOUND) << st.error_message();
}

}  // namespace
}  // namespace updp::testing
