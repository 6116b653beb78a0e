// Token authentication with roles (--auth_tokens FILE): the token table and which
// role each updp.v1.Updp method needs. No gRPC here: server/rpc reads the
// `authorization: Bearer <token>` metadata and asks this.
#ifndef UPDP_SERVER_CORE_AUTH_H_
#define UPDP_SERVER_CORE_AUTH_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace updp::core {

// Ordered: each role may do everything the ones below it may.
enum class Role { kReader = 1, kOperator = 2, kAdmin = 3 };

const char* RoleName(Role r);
std::optional<Role> ParseRole(absl::string_view s);

struct Caller {
  std::string name;  // from the tokens file; never the token
  Role role = Role::kReader;
};

class TokenTable {
 public:
  // The shortest token accepted: 16 characters (a guessable token is no control).
  static constexpr size_t kMinTokenLength = 16;

  // One `token role [name]` per line; blank lines and lines starting with '#' are
  // skipped. A token is 16-512 printable ASCII characters without spaces. An unnamed
  // token is called "<role>-line<N>". Errors name the file and line, never the token.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text, absl::string_view source);
  // Parse(contents of `path`); INVALID_ARGUMENT naming --auth_tokens for an unreadable
  // or empty file.
  static absl::StatusOr<TokenTable> Load(const std::string& path);

  // The caller a presented token belongs to. Compares SHA-256 digests in constant time
  // against every entry (no early exit), so timing tells nothing about which prefix or
  // which entry matched; the table holds digests only.
  std::optional<Caller> Find(absl::string_view token) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::array<uint8_t, 32> digest;
    Caller caller;
  };
  std::vector<Entry> entries_;
};

// The role a method of updp.v1.Updp needs: reader for reads (Get*, List*, Watch*,
// ExportPrompt), operator for everything that starts work or imports, admin for
// DeleteDataset. A method not in the table needs admin (a new RPC is closed until it
// is given a role on purpose).
Role RequiredRole(absl::string_view method);
// Whether `method` is in the table (tests check every RPC of the service is).
bool HasRolePolicy(absl::string_view method);
// Whether `method` changes state (every call of it is audited).
bool ChangesState(absl::string_view method);

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_AUTH_H_
