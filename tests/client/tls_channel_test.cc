// updpctl's TLS options: which combinations are errors before any connection.
#include "client/tls_channel.h"

#include <gtest/gtest.h>

namespace updp::client {
namespace {

TEST(TlsChannel, NoFileIsPlaintextAndTlsAloneUsesTheSystemRoots) {
  auto plain = ChannelCredentialsFrom({});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_NE(*plain, nullptr);
  TlsClientFiles f;
  f.tls = true;
  auto tls = ChannelCredentialsFrom(f);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_NE(*tls, nullptr);
}

TEST(TlsChannel, CertificateAndKeyGoTogether) {
  TlsClientFiles f;
  f.cert = "client.pem";
  auto s = ChannelCredentialsFrom(f);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), "--tls_cert needs --tls_key (a client certificate and its key)");
  f.cert.clear();
  f.key = "client.key";
  s = ChannelCredentialsFrom(f);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), "--tls_key needs --tls_cert (a client certificate and its key)");
}

TEST(TlsChannel, AnUnreadableFileNamesItsFlag) {
  TlsClientFiles f;
  f.ca = "/nonexistent/ca.pem";
  auto s = ChannelCredentialsFrom(f);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.status().message(),
            "--tls_ca /nonexistent/ca.pem: cannot read (No such file or directory)");
}

}  // namespace
}  // namespace updp::client
