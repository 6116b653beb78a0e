#include "client/tls_channel.h"

#include "absl/strings/str_cat.h"
#include "server/util/flag_file.h"

namespace updp::client {

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFrom(
    const TlsClientFiles& f) {
  if (!f.enabled()) return grpc::InsecureChannelCredentials();
  if (f.cert.empty() != f.key.empty()) {
    return absl::InvalidArgumentError(
        f.cert.empty() ? "--tls_key needs --tls_cert (a client certificate and its key)"
                       : "--tls_cert needs --tls_key (a client certificate and its key)");
  }
  grpc::SslCredentialsOptions o;
  if (!f.ca.empty()) {
    auto ca = ReadFlagFile("tls_ca", f.ca);
    if (!ca.ok()) return ca.status();
    o.pem_root_certs = *ca;
  }
  if (!f.cert.empty()) {
    auto cert = ReadFlagFile("tls_cert", f.cert);
    if (!cert.ok()) return cert.status();
    auto key = ReadFlagFile("tls_key", f.key);
    if (!key.ok()) return key.status();
    o.pem_cert_chain = *cert;
    o.pem_private_key = *key;
  }
  return grpc::SslCredentials(o);
}

}  // namespace updp::client
