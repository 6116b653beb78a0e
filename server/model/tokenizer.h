// BERT uncased WordPiece tokenizer (the rules of Hugging Face's slow
// BertTokenizer with do_lower_case=True), Unicode handling by ICU.
#ifndef UPDP_SERVER_MODEL_TOKENIZER_H_
#define UPDP_SERVER_MODEL_TOKENIZER_H_

#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace updp::model {

struct Encoding {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;
};

class BertTokenizer {
 public:
  static absl::StatusOr<BertTokenizer> FromVocabFile(const std::string& path);
  static absl::StatusOr<BertTokenizer> FromVocabText(const std::string& text);

  // Word pieces of `text` (no special tokens).
  std::vector<std::string> Tokenize(const std::string& text) const;
  // [CLS] pieces [SEP] ids; truncated to max_length (keeping [SEP]) when > 0, and
  // right-padded with [PAD] to max_length when pad is true.
  Encoding Encode(const std::string& text, int max_length = 0, bool pad = false) const;
  int64_t TokenId(const std::string& token) const;  // unk id when absent

  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  size_t vocab_size() const { return vocab_.size(); }

 private:
  std::unordered_map<std::string, int64_t> vocab_;
  int64_t cls_id_ = 101, sep_id_ = 102, pad_id_ = 0, unk_id_ = 100;
};

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_TOKENIZER_H_
