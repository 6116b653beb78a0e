#include "server/core/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/util/flag_file.h"

namespace updp::core {
namespace {

constexpr size_t kMaxTokenLength = 512;

std::array<uint8_t, 32> Digest(absl::string_view s) {
  std::array<uint8_t, 32> d;
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return d;
}

struct MethodPolicy {
  Role role;
  bool changes_state;
};

// Every RPC of updp.v1.Updp (a service test checks the list is complete).
const std::unordered_map<std::string, MethodPolicy>& Policies() {
  static const auto* m = new std::unordered_map<std::string, MethodPolicy>{
      {"GetDataset", {Role::kReader, false}},
      {"ListDatasets", {Role::kReader, false}},
      {"ListItems", {Role::kReader, false}},
      {"GetJob", {Role::kReader, false}},
      {"ListJobs", {Role::kReader, false}},
      {"WatchJob", {Role::kReader, false}},
      {"GetSelection", {Role::kReader, false}},
      {"GetSelectionReport", {Role::kReader, false}},
      {"GetDuplicates", {Role::kReader, false}},
      {"ListPrompts", {Role::kReader, false}},
      {"ExportPrompt", {Role::kReader, false}},
      {"RegisterDataset", {Role::kOperator, true}},
      {"UploadEmbeddings", {Role::kOperator, true}},
      {"RefreshDataset", {Role::kOperator, true}},
      {"StartEmbedding", {Role::kOperator, true}},
      {"AttachFeatures", {Role::kOperator, true}},
      {"LearnPrompt", {Role::kOperator, true}},
      {"Select", {Role::kOperator, true}},
      {"FindDuplicates", {Role::kOperator, true}},
      {"CancelJob", {Role::kOperator, true}},
      {"ResumeJob", {Role::kOperator, true}},
      {"ImportPrompt", {Role::kOperator, true}},
      {"DeleteDataset", {Role::kAdmin, true}},
  };
  return *m;
}

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kReader:
      return "reader";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

std::optional<Role> ParseRole(absl::string_view s) {
  if (s == "reader") return Role::kReader;
  if (s == "operator") return Role::kOperator;
  if (s == "admin") return Role::kAdmin;
  return std::nullopt;
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text, absl::string_view source) {
  TokenTable t;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](absl::string_view why) {
      // The line itself is never echoed: it holds a token.
      return absl::InvalidArgumentError(absl::StrCat(source, " line ", line_no, ": ", why));
    };
    if (f.size() < 2 || f.size() > 3) {
      return bad("expected `token role [name]`");
    }
    const absl::string_view token = f[0];
    if (token.size() < kMinTokenLength || token.size() > kMaxTokenLength) {
      return bad(absl::StrCat("the token must be ", kMinTokenLength, "-", kMaxTokenLength,
                              " characters (it has ", token.size(), ")"));
    }
    for (char c : token) {
      if (c < 0x21 || c > 0x7e) return bad("the token must be printable ASCII");
    }
    auto role = ParseRole(f[1]);
    if (!role) {
      return bad(absl::StrCat("unknown role \"", absl::CHexEscape(f[1]),
                              "\" (reader, operator or admin)"));
    }
    Entry e;
    e.digest = Digest(token);
    e.caller.role = *role;
    e.caller.name = f.size() == 3 ? std::string(f[2]) : absl::StrCat(f[1], "-line", line_no);
    if (e.caller.name.size() > 64) return bad("the name must be at most 64 characters");
    for (const auto& other : t.entries_) {
      if (other.digest == e.digest) return bad("the same token appears twice");
    }
    t.entries_.push_back(std::move(e));
  }
  if (t.entries_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no tokens"));
  }
  return t;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  auto text = ReadFlagFile("auth_tokens", path);
  if (!text.ok()) return text.status();
  return Parse(*text, absl::StrCat("--auth_tokens ", path));
}

std::optional<Caller> TokenTable::Find(absl::string_view token) const {
  const auto d = Digest(token);
  const Entry* found = nullptr;
  for (const auto& e : entries_) {
    // CRYPTO_memcmp takes the same time whatever the bytes; every entry is compared.
    const bool eq = CRYPTO_memcmp(e.digest.data(), d.data(), d.size()) == 0;
    if (eq) found = &e;
  }
  if (found == nullptr) return std::nullopt;
  return found->caller;
}

Role RequiredRole(absl::string_view method) {
  const auto& p = Policies();
  auto it = p.find(std::string(method));
  return it == p.end() ? Role::kAdmin : it->second.role;
}

bool HasRolePolicy(absl::string_view method) { return Policies().count(std::string(method)) > 0; }

bool ChangesState(absl::string_view method) {
  const auto& p = Policies();
  auto it = p.find(std::string(method));
  // Unknown methods are audited too: they are admin-only until classified.
  return it == p.end() || it->second.changes_state;
}

}  // namespace updp::core
