// Path escapes, through the real server: `..` and symlinks that leave --allowed_roots are
// refused for every path a request names (image directories, manifests, .npy files, ids
// files, AttachFeatures directories), and a manifest line or a listed image outside the
// roots is a failed item, not a failed registration. (Dataset names that would leave
// data_dir: regressions_test.cc, NamesThatCouldEscapeDataDirAreRefused and neighbours.)
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "server/model/npy.h"
#include "tests/service/test_env.h"

namespace updp::testing {
namespace {

class PathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("paths");
    outside_ = MakeTempDir("outside");  // a sibling of root_: not an allowed root
    WriteImages(root_ + "/images", 0, 3);
    WriteImages(outside_ + "/images", 10, 2);
    ASSERT_TRUE(model::WriteNpy(outside_ + "/emb.npy", torch::randn({4, 2})).ok());
    ASSERT_TRUE(model::WriteNpy(root_ + "/emb.npy", torch::randn({4, 2})).ok());
    std::ofstream(outside_ + "/ids.txt") << "a\nb\nc\nd\n";
    std::ofstream(root_ + "/ids.txt") << "a\nb\nc\nd\n";
    std::ofstream(outside_ + "/manifest.csv") << "id,path\nx," << FirstImage(root_) << "\n";
    // `..` from inside the root to the outside folder.
    dotdot_ = root_ + "/../" + fs::path(outside_).filename().string();
    server_ = std::make_unique<Server>(root_, "");  // registrations need no model
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  static std::string FirstImage(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir + "/images")) {
      names.push_back(e.path().string());
    }
    std::sort(names.begin(), names.end());
    return names.at(0);
  }
  grpc::Status Register(v1::RegisterDatasetRequest r, v1::Dataset* d) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    return server_->stub()->RegisterDataset(&c, r, d);
  }
  grpc::Status Images(const std::string& name, const std::string& path, v1::Dataset* d) {
    v1::RegisterDatasetRequest r;
    r.set_name(name);
    r.mutable_images()->set_path(path);
    return Register(r, d);
  }
  grpc::Status Manifest(const std::string& name, const std::string& path, v1::Dataset* d) {
    v1::RegisterDatasetRequest r;
    r.set_name(name);
    r.mutable_manifest()->set_path(path);
    return Register(r, d);
  }
  grpc::Status Npy(const std::string& path, const std::string& ids) {
    v1::RegisterDatasetRequest r;
    r.set_name("vecs");
    r.mutable_embeddings()->set_path(path);
    r.mutable_embeddings()->set_ids_path(ids);
    v1::Dataset d;
    return Register(r, &d);
  }
  // The refusal of a path outside: PERMISSION_DENIED naming the field, never the
  // outside folder a symlink points to.
  void ExpectOutside(const grpc::Status& s, const std::string& field) {
    EXPECT_EQ(s.error_code(), grpc::PERMISSION_DENIED) << s.error_message();
    EXPECT_NE(s.error_message().find(field), std::string::npos) << s.error_message();
    EXPECT_EQ(s.error_message().find(fs::path(outside_).filename().string()), std::string::npos)
        << "the error reveals where the path leads: " << s.error_message();
  }
  std::vector<std::string> DatasetNames() {
    grpc::ClientContext c;
    v1::ListDatasetsResponse l;
    EXPECT_TRUE(server_->stub()->ListDatasets(&c, v1::ListDatasetsRequest(), &l).ok());
    std::vector<std::string> out;
    for (const auto& d : l.datasets()) out.push_back(d.name());
    return out;
  }

  std::string root_, outside_, dotdot_;
  std::unique_ptr<Server> server_;
};

TEST_F(PathsTest, ImageDirectoriesThatLeaveTheRootsAreRefused) {
  v1::Dataset d;
  grpc::Status s = Images("a", dotdot_ + "/images", &d);
  EXPECT_EQ(s.error_code(), grpc::PERMISSION_DENIED) << s.error_message();
  fs::create_directory_symlink(outside_ + "/images", root_ + "/link");
  ExpectOutside(Images("a", root_ + "/link", &d), "images.path");
  // A symlinked parent folder: the path inside it leaves the roots too.
  fs::create_directory_symlink(outside_, root_ + "/parent");
  ExpectOutside(Images("a", root_ + "/parent/images", &d), "images.path");
  EXPECT_TRUE(DatasetNames().empty());
}

TEST_F(PathsTest, AListedImageThatLinksOutsideIsAFailedItem) {
  fs::create_symlink(FirstImage(outside_), root_ + "/images/zz-link.png");
  v1::Dataset d;
  grpc::Status s = Images("a", root_ + "/images", &d);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(d.num_items(), 3);  // the link is not an item: it never gets a feature row
  ASSERT_EQ(d.num_failed(), 1);
  EXPECT_EQ(d.failed_items(0).item_id(), "zz-link.png");
  EXPECT_NE(d.failed_items(0).error().find("outside the allowed roots"), std::string::npos)
      << d.failed_items(0).error();
}

TEST_F(PathsTest, ManifestsThatLeaveTheRootsAreRefused) {
  v1::Dataset d;
  grpc::Status s = Manifest("m", dotdot_ + "/manifest.csv", &d);
  EXPECT_EQ(s.error_code(), grpc::PERMISSION_DENIED) << s.error_message();
  fs::create_symlink(outside_ + "/manifest.csv", root_ + "/manifest-link.csv");
  ExpectOutside(Manifest("m", root_ + "/manifest-link.csv", &d), "manifest.path");
  EXPECT_TRUE(DatasetNames().empty());
}

TEST_F(PathsTest, ManifestLinesOutsideTheRootsAreFailedItems) {
  fs::create_symlink(FirstImage(outside_), root_ + "/inside-link.png");
  std::ofstream(root_ + "/manifest.csv")
      << "id,path\n"
      << "good," << FirstImage(root_) << "\n"
      << "absolute," << FirstImage(outside_) << "\n"
      << "dotdot,../" << fs::path(outside_).filename().string() << "/images/"
      << fs::path(FirstImage(outside_)).filename().string() << "\n"
      << "link,inside-link.png\n";
  v1::Dataset d;
  grpc::Status s = Manifest("m", root_ + "/manifest.csv", &d);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(d.num_items(), 4);
  ASSERT_EQ(d.num_failed(), 3);
  std::set<std::string> failed;
  for (const auto& f : d.failed_items()) {
    failed.insert(f.item_id());
    EXPECT_NE(f.error().find("outside the allowed roots"), std::string::npos) << f.error();
  }
  EXPECT_EQ(failed, (std::set<std::string>{"absolute", "dotdot", "link"}));
}

TEST_F(PathsTest, NpyAndIdsFilesThatLeaveTheRootsAreRefused) {
  EXPECT_EQ(Npy(dotdot_ + "/emb.npy", "").error_code(), grpc::PERMISSION_DENIED);
  fs::create_symlink(outside_ + "/emb.npy", root_ + "/emb-link.npy");
  ExpectOutside(Npy(root_ + "/emb-link.npy", ""), "embeddings.path");
  EXPECT_EQ(Npy(root_ + "/emb.npy", dotdot_ + "/ids.txt").error_code(), grpc::PERMISSION_DENIED);
  fs::create_symlink(outside_ + "/ids.txt", root_ + "/ids-link.txt");
  ExpectOutside(Npy(root_ + "/emb.npy", root_ + "/ids-link.txt"), "embeddings.ids_path");
  EXPECT_TRUE(DatasetNames().empty());
  // The same files inside the roots register: the refusals were about the paths.
  grpc::Status s = Npy(root_ + "/emb.npy", root_ + "/ids.txt");
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(PathsTest, AttachDirectoriesThatLeaveTheRootsAreRefused) {
  // AttachFeatures checks shards against the model: this server has one.
  server_->Stop();
  server_ = std::make_unique<Server>(root_, TinyModel(root_));
  v1::Dataset d;
  ASSERT_TRUE(Images("a", root_ + "/images", &d).ok());
  fs::create_directory_symlink(outside_, root_ + "/shards");
  for (const std::string& dir : {dotdot_, root_ + "/shards"}) {
    v1::AttachFeaturesRequest r;
    r.set_dataset("a");
    r.set_dir(dir);
    grpc::ClientContext c;
    v1::Job j;
    const grpc::Status s = server_->stub()->AttachFeatures(&c, r, &j);
    if (dir == dotdot_) {
      EXPECT_EQ(s.error_code(), grpc::PERMISSION_DENIED) << s.error_message();
    } else {
      ExpectOutside(s, "dir");
    }
  }
}

}  // namespace
}  // namespace updp::testing
