#include "server/model/tokenizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/util/atomic_file.h"

namespace updp::model {
namespace {

constexpr int kMaxCharsPerWord = 100;

bool IsWhitespace(UChar32 c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
  return u_charType(c) == U_SPACE_SEPARATOR;
}

bool IsControl(UChar32 c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  switch (u_charType(c)) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_PRIVATE_USE_CHAR:
    case U_SURROGATE:
    case U_UNASSIGNED:
      return true;
    default:
      return false;
  }
}

bool IsPunctuation(UChar32 c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126)) {
    return true;
  }
  switch (u_charType(c)) {
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

bool IsCjk(UChar32 c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Characters Python's str.split() treats as separators that survive cleaning.
bool IsSplitSpace(UChar32 c) { return c == ' ' || c == 0x2028 || c == 0x2029 || IsWhitespace(c); }

std::u32string ToU32(const icu::UnicodeString& s) {
  std::u32string out;
  for (int32_t i = 0; i < s.length();) {
    UChar32 c = s.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

icu::UnicodeString FromU32(const std::u32string& s) {
  icu::UnicodeString out;
  for (char32_t c : s) out.append(static_cast<UChar32>(c));
  return out;
}

std::string Utf8(const std::u32string& s, size_t begin, size_t end) {
  std::string out;
  FromU32(s.substr(begin, end - begin)).toUTF8String(out);
  return out;
}

}  // namespace

absl::StatusOr<BertTokenizer> BertTokenizer::FromVocabFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto t = FromVocabText(*text);
  if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", t.status().message()));
  return t;
}

absl::StatusOr<BertTokenizer> BertTokenizer::FromVocabText(const std::string& text) {
  BertTokenizer t;
  int64_t id = 0;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (absl::string_view line : lines) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    t.vocab_.emplace(std::string(line), id++);
  }
  for (auto [name, field] : {std::pair<const char*, int64_t*>{"[CLS]", &t.cls_id_},
                             {"[SEP]", &t.sep_id_},
                             {"[PAD]", &t.pad_id_},
                             {"[UNK]", &t.unk_id_}}) {
    auto it = t.vocab_.find(name);
    if (it == t.vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("vocab has no ", name, " token"));
    }
    *field = it->second;
  }
  return t;
}

int64_t BertTokenizer::TokenId(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? unk_id_ : it->second;
}

std::vector<std::string> BertTokenizer::Tokenize(const std::string& text) const {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(err);
  std::u32string input = ToU32(icu::UnicodeString::fromUTF8(text));

  // Clean (drop NUL, U+FFFD and controls; whitespace -> ' '), isolate CJK ideographs.
  std::u32string cleaned;
  for (char32_t c : input) {
    if (c == 0 || c == 0xFFFD || IsControl(static_cast<UChar32>(c))) continue;
    if (IsWhitespace(static_cast<UChar32>(c))) {
      cleaned.push_back(U' ');
    } else if (IsCjk(static_cast<UChar32>(c))) {
      cleaned += U' ';
      cleaned.push_back(c);
      cleaned += U' ';
    } else {
      cleaned.push_back(c);
    }
  }
  err = U_ZERO_ERROR;
  std::u32string normalized = ToU32(nfc->normalize(FromU32(cleaned), err));

  // Whitespace split; per word lower-case, NFD, strip Mn, split punctuation.
  std::vector<std::u32string> words;
  std::u32string cur;
  auto flush_word = [&]() {
    if (cur.empty()) return;
    icu::UnicodeString w = FromU32(cur);
    w.toLower(icu::Locale::getRoot());
    UErrorCode e = U_ZERO_ERROR;
    std::u32string decomposed = ToU32(nfd->normalize(w, e));
    std::u32string piece;
    for (char32_t c : decomposed) {
      if (u_charType(static_cast<UChar32>(c)) == U_NON_SPACING_MARK) continue;
      if (IsPunctuation(static_cast<UChar32>(c))) {
        if (!piece.empty()) words.push_back(piece);
        piece.clear();
        words.push_back(std::u32string(1, c));
      } else {
        piece.push_back(c);
      }
    }
    if (!piece.empty()) words.push_back(piece);
    cur.clear();
  };
  for (char32_t c : normalized) {
    if (IsSplitSpace(static_cast<UChar32>(c))) {
      flush_word();
    } else {
      cur.push_back(c);
    }
  }
  flush_word();

  // WordPiece: greedy longest-match-first.
  std::vector<std::string> out;
  for (const auto& w : words) {
    if (w.size() > kMaxCharsPerWord) {
      out.push_back("[UNK]");
      continue;
    }
    std::vector<std::string> pieces;
    size_t start = 0;
    bool bad = false;
    while (start < w.size()) {
      size_t end = w.size();
      std::string found;
      while (start < end) {
        std::string sub = Utf8(w, start, end);
        if (start > 0) sub = "##" + sub;
        if (vocab_.count(sub)) {
          found = std::move(sub);
          break;
        }
        --end;
      }
      if (found.empty()) {
        bad = true;
        break;
      }
      pieces.push_back(std::move(found));
      start = end;
    }
    if (bad) {
      out.push_back("[UNK]");
    } else {
      out.insert(out.end(), pieces.begin(), pieces.end());
    }
  }
  return out;
}

Encoding BertTokenizer::Encode(const std::string& text, int max_length, bool pad) const {
  Encoding e;
  e.input_ids.push_back(cls_id_);
  for (const auto& p : Tokenize(text)) e.input_ids.push_back(TokenId(p));
  e.input_ids.push_back(sep_id_);
  if (max_length > 0 && static_cast<int>(e.input_ids.size()) > max_length) {
    e.input_ids.resize(max_length);
    e.input_ids.back() = sep_id_;
  }
  e.attention_mask.assign(e.input_ids.size(), 1);
  if (pad && max_length > 0) {
    while (static_cast<int>(e.input_ids.size()) < max_length) {
      e.input_ids.push_back(pad_id_);
      e.attention_mask.push_back(0);
    }
  }
  return e;
}

}  // namespace updp::model
