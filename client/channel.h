// updpctl's channel to the server: its credentials (tls_channel.h) and, with a token,
// `authorization: Bearer <token>` metadata on every call (a client interceptor, so it
// works over TLS and plaintext alike).
#ifndef UPDP_CLIENT_CHANNEL_H_
#define UPDP_CLIENT_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace updp::client {

// The token updpctl sends: `flag_token` (--token), else the first line of
// `flag_file` (--token_file), else $UPDP_TOKEN, else $UPDP_TOKEN_FILE's first line;
// empty when none is set. INVALID_ARGUMENT naming the flag for an unreadable file.
absl::StatusOr<std::string> ResolveToken(const std::string& flag_token,
                                         const std::string& flag_file);

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& addr,
                                           std::shared_ptr<grpc::ChannelCredentials> creds,
                                           const std::string& token);

}  // namespace updp::client

#endif  // UPDP_CLIENT_CHANNEL_H_
