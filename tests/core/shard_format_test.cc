// The scale-out file formats (server/util/shard_format.h): shard ranges, the items
// file reader's checks, the chunk sidecar.
#include "server/util/shard_format.h"

#include <gtest/gtest.h>

#include <fstream>

namespace updp::shard {
namespace {

TEST(ShardChunkRangeTest, ShardsCoverEveryChunkExactlyOnceInOrder) {
  for (int64_t chunks : {0, 1, 5, 13, 1000, 9766}) {
    for (int shards : {1, 2, 3, 4, 7, 16, 64}) {
      int64_t next = 0, smallest = chunks, largest = 0;
      for (int s = 0; s < shards; ++s) {
        auto [first, last] = ShardChunkRange(chunks, shards, s);
        EXPECT_EQ(first, next) << chunks << " chunks, shard " << s << " of " << shards;
        EXPECT_LE(first, last);
        smallest = std::min(smallest, last - first);
        largest = std::max(largest, last - first);
        next = last;
      }
      EXPECT_EQ(next, chunks) << chunks << " chunks in " << shards << " shards";
      EXPECT_LE(largest - smallest, 1) << "unbalanced: " << chunks << " in " << shards;
    }
  }
}

class ItemsFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text) {
    path_ = ::testing::TempDir() + "/items_" + std::to_string(++n_) + ".jsonl";
    std::ofstream(path_) << text;
    return path_;
  }
  static std::string Items(int n, int64_t chunk_size = 4) {
    std::string s = ItemsHeaderLine({"ds", n, chunk_size}) + "\n";
    for (int i = 0; i < n; ++i) {
      s += ItemLine({i, "id" + std::to_string(i), "/img/" + std::to_string(i) + ".png"}) + "\n";
    }
    return s;
  }
  absl::StatusOr<ItemsHeader> Read(const std::string& path, int64_t begin, int64_t end,
                                   std::vector<ItemEntry>* out) {
    return ReadItems(
        path, [&](const ItemsHeader&) { return std::make_pair(begin, end); }, out);
  }
  std::string path_;
  int n_ = 0;
};

TEST_F(ItemsFileTest, KeepsOnlyTheRequestedRangeAndChecksTheRest) {
  std::vector<ItemEntry> got;
  auto h = Read(Write(Items(10)), 4, 8, &got);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->dataset, "ds");
  EXPECT_EQ(h->num_items, 10);
  EXPECT_EQ(h->chunk_size, 4);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].index, 4);
  EXPECT_EQ(got[0].item_id, "id4");
  EXPECT_EQ(got[3].path, "/img/7.png");
}

TEST_F(ItemsFileTest, RejectsBrokenFilesNamingTheLine) {
  std::vector<ItemEntry> got;
  const std::string good = Items(3);
  struct Case {
    std::string text, message;
  };
  const std::vector<Case> cases = {
      {"", "empty items file"},
      {ItemLine({0, "a", "/a"}) + "\n", ":1: no \"format\""},
      {"{\"format\":\"other\"}\n", "not an items file"},
      {"{\"format\":\"updp-items\",\"version\":2}\n", "version 2"},
      {ItemsHeaderLine({"ds", 3, 0}) + "\n", "chunk_size >= 1"},
      {ItemsHeaderLine({"ds", 3, 4}) + "\n" + ItemLine({1, "b", "/b"}) + "\n",
       ":2: index 1 where 0 was expected"},
      {good.substr(0, good.rfind('{')), "2 items, the header says 3 (truncated?)"},
      {good + ItemLine({3, "d", "/d"}) + "\n", ":5: more items than the header's 3"},
      {ItemsHeaderLine({"ds", 1, 4}) + "\nnot json\n", ":2: not a JSON object"},
      {ItemsHeaderLine({"ds", 1, 4}) + "\n{\"index\":0,\"id\":7,\"path\":\"/p\"}\n",
       ":2: \"id\" is not a string"},
  };
  for (const Case& c : cases) {
    got.clear();
    auto h = Read(Write(c.text), 0, 100, &got);
    ASSERT_FALSE(h.ok()) << c.text;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << h.status();
    EXPECT_NE(h.status().message().find(c.message), std::string::npos) << h.status();
  }
  EXPECT_EQ(Read("/nonexistent/items.jsonl", 0, 1, &got).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SidecarTest, RoundTripsAndRefusesOtherFormats) {
  ChunkSidecar s;
  s.dataset = "ds";
  s.num_items = 20;
  s.chunk_size = 8;
  s.chunk = 2;
  s.begin = 16;
  s.end = 20;
  s.rows = 3;
  s.dim = 256;
  s.model_identity = "abc";
  IdsDigest d;
  d.Add("x");
  s.ids_digest = d.Hex();
  s.failed = {{17, "id17", "/p/17.png", "corrupt PNG"}};
  s.shard = 1;
  s.shards = 2;
  auto back = ParseSidecar(SidecarToJson(s), "f.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(SidecarToJson(*back), SidecarToJson(s));
  EXPECT_EQ(back->failed[0].error, "corrupt PNG");
  EXPECT_EQ(SidecarName(2), "chunk_000002.json");
  EXPECT_FALSE(ParseSidecar("{}", "f.json").ok());
  EXPECT_FALSE(ParseSidecar("[1]", "f.json").ok());
  auto wrong = ParseSidecar(R"({"format":"updp-feature-chunk","version":9})", "f.json");
  EXPECT_NE(wrong.status().message().find("version 9"), std::string::npos);
}

TEST(IdsDigestTest, DependsOnEveryIdAndTheirBoundaries) {
  auto digest = [](std::vector<std::string> ids) {
    IdsDigest d;
    for (const auto& id : ids) d.Add(id);
    return d.Hex();
  };
  EXPECT_EQ(digest({"a", "b"}), digest({"a", "b"}));
  EXPECT_NE(digest({"a", "b"}), digest({"b", "a"}));
  EXPECT_NE(digest({"ab"}), digest({"a", "b"}));
  EXPECT_EQ(digest({}).size(), 16u);
}

}  // namespace
}  // namespace updp::shard
