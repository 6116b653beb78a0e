#include "server/model/tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/util/atomic_file.h"

namespace updp::model {
namespace {

const std::string kDir = std::string(UPDP_FIXTURES) + "/tokenizer";

TEST(Tokenizer, MatchesEveryReferenceCase) {
  auto tok = BertTokenizer::FromVocabFile(kDir + "/bert-base-uncased-vocab.txt");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->vocab_size(), 30522u);
  auto text = ReadFile(kDir + "/tokenizer_cases.json");
  ASSERT_TRUE(text.ok());
  auto cases = nlohmann::json::parse(*text);
  ASSERT_EQ(cases.size(), 44u);
  int failures = 0;
  for (const auto& c : cases) {
    auto ids = tok->Encode(c["text"].get<std::string>()).input_ids;
    auto want = c["input_ids"].get<std::vector<int64_t>>();
    if (ids != want) {
      ++failures;
      ADD_FAILURE() << "text: " << c["text"].get<std::string>();
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(Tokenizer, FixtureCheckpointVocabAndPadding) {
  auto tok = BertTokenizer::FromVocabFile(std::string(UPDP_FIXTURES) + "/blip2-tiny-a/vocab.txt");
  ASSERT_TRUE(tok.ok());
  auto e = tok->Encode("a photo of a cat", 14, true);
  EXPECT_EQ(e.input_ids, (std::vector<int64_t>{101, 1037, 1113, 1068, 1037, 1111, 102, 0, 0, 0, 0,
                                               0, 0, 0}));
  EXPECT_EQ(e.attention_mask,
            (std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}));
  e = tok->Encode("Two dogs playing with a frisbee in the snow!");
  EXPECT_EQ(e.input_ids, (std::vector<int64_t>{101, 1072, 1112, 1104, 1070, 1037, 1114, 1092, 1115,
                                               1069, 1067, 1110, 999, 102}));
  // Truncation keeps [SEP] last.
  e = tok->Encode("Two dogs playing with a frisbee in the snow!", 5);
  EXPECT_EQ(e.input_ids, (std::vector<int64_t>{101, 1072, 1112, 1104, 102}));
}

TEST(Tokenizer, RejectsVocabWithoutSpecialTokens) {
  auto tok = BertTokenizer::FromVocabText("a\nb\nc\n");
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace updp::model
