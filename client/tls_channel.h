// updpctl's channel credentials: plaintext, or TLS from PEM files (--tls_ca, --tls_cert,
// --tls_key, else $UPDP_TLS_CA, $UPDP_TLS_CERT, $UPDP_TLS_KEY) or the system roots (--tls).
#ifndef UPDP_CLIENT_TLS_CHANNEL_H_
#define UPDP_CLIENT_TLS_CHANNEL_H_

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace updp::client {

struct TlsClientFiles {
  bool tls = false;  // TLS even without a file: the system roots, no client certificate
  std::string ca;    // roots that sign the server's certificate; empty: the system roots
  std::string cert;  // client certificate (PEM), for a server with --tls_client_ca
  std::string key;   // its private key (PEM)
  bool enabled() const { return tls || !ca.empty() || !cert.empty() || !key.empty(); }
};

// Insecure credentials when no file is named; else SSL credentials from the files.
// INVALID_ARGUMENT naming the flag and file for one that cannot be read, and for a
// certificate without its key (or the reverse).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFrom(
    const TlsClientFiles& files);

}  // namespace updp::client

#endif  // UPDP_CLIENT_TLS_CHANNEL_H_
