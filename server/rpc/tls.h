// TLS for the gRPC port: the PEM files named by --tls_cert/--tls_key/--tls_client_ca
// are read and checked at start (missing, unreadable, not PEM, key not matching the
// certificate) so a bad deployment stops with a message naming the flag and file
// instead of a server that fails every handshake.
#ifndef UPDP_SERVER_RPC_TLS_H_
#define UPDP_SERVER_RPC_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace updp::rpc {

struct TlsFiles {
  std::string cert;       // server certificate chain (PEM); empty: plaintext
  std::string key;        // its private key (PEM)
  std::string client_ca;  // CA bundle (PEM) for client certificates; non-empty: mTLS
  bool enabled() const { return !cert.empty() || !key.empty() || !client_ca.empty(); }
};

// Insecure credentials when no file is named; else TLS credentials, requiring and
// verifying a client certificate when `client_ca` is set. INVALID_ARGUMENT (naming the
// flag and the file) for a missing, unreadable or malformed file, a key that does not
// match the certificate, or a key or CA without a certificate.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFrom(
    const TlsFiles& files);

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_TLS_H_
