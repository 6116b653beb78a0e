#include "server/rpc/tls.h"

#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "server/util/flag_file.h"

namespace updp::rpc {
namespace {

// The first certificate of a PEM text, or null.
X509* FirstCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  return x;
}

EVP_PKEY* PrivateKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* k = bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  return k;
}

// gRPC only reports a bad pair at the first handshake (or aborts in BuildAndStart),
// so the pair is checked here with OpenSSL, which gRPC itself uses.
absl::Status CheckPair(const TlsFiles& f, const std::string& cert_pem, const std::string& key_pem) {
  X509* cert = FirstCert(cert_pem);
  EVP_PKEY* key = PrivateKey(key_pem);
  absl::Status st;
  if (cert == nullptr) {
    st = absl::InvalidArgumentError(
        absl::StrCat("--tls_cert ", f.cert, ": no PEM certificate in the file"));
  } else if (key == nullptr) {
    st = absl::InvalidArgumentError(
        absl::StrCat("--tls_key ", f.key, ": no PEM private key in the file (or it is encrypted)"));
  } else if (X509_check_private_key(cert, key) != 1) {
    st = absl::InvalidArgumentError(absl::StrCat(
        "--tls_key ", f.key, " does not match the certificate in --tls_cert ", f.cert));
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  ERR_clear_error();  // nothing of ours may be left on the thread's OpenSSL error queue
  return st;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFrom(const TlsFiles& f) {
  if (!f.enabled()) return grpc::InsecureServerCredentials();
  if (f.cert.empty() || f.key.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls_cert and --tls_key (--tls_client_ca adds client certificates)");
  }
  auto cert = ReadFlagFile("tls_cert", f.cert);
  if (!cert.ok()) return cert.status();
  auto key = ReadFlagFile("tls_key", f.key);
  if (!key.ok()) return key.status();
  if (auto st = CheckPair(f, *cert, *key); !st.ok()) return st;
  grpc::SslServerCredentialsOptions o;
  if (!f.client_ca.empty()) {
    auto ca = ReadFlagFile("tls_client_ca", f.client_ca);
    if (!ca.ok()) return ca.status();
    X509* first = FirstCert(*ca);
    X509_free(first);
    ERR_clear_error();
    if (first == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls_client_ca ", f.client_ca, ": no PEM certificate in the file"));
    }
    o.pem_root_certs = *ca;
    o.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    o.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  o.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(o);
}

}  // namespace updp::rpc
