#include "client/channel.h"

#include <grpcpp/support/client_interceptor.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/util/flag_file.h"

namespace updp::client {
namespace {

using grpc::experimental::InterceptionHookPoints;

class BearerInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      m->GetSendInitialMetadata()->insert({"authorization", *header_});
    }
    m->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(&header_);
  }

 private:
  const std::string header_;  // lives as long as the channel (which owns the factory)
};

absl::StatusOr<std::string> FirstLine(const char* flag, const std::string& path) {
  auto text = ReadFlagFile(flag, path);
  if (!text.ok()) return text.status();
  absl::string_view v = *text;
  v = v.substr(0, v.find('\n'));
  v = absl::StripAsciiWhitespace(v);
  if (v.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", path, ": empty"));
  }
  return std::string(v);
}

}  // namespace

absl::StatusOr<std::string> ResolveToken(const std::string& flag_token,
                                         const std::string& flag_file) {
  if (!flag_token.empty()) return flag_token;
  if (!flag_file.empty()) return FirstLine("token_file", flag_file);
  if (const char* t = std::getenv("UPDP_TOKEN"); t && *t) return std::string(t);
  if (const char* f = std::getenv("UPDP_TOKEN_FILE"); f && *f) return FirstLine("token_file", f);
  return std::string();
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& addr,
                                           std::shared_ptr<grpc::ChannelCredentials> creds,
                                           const std::string& token) {
  grpc::ChannelArguments args;
  // Exported prompt artifacts and report pages are larger than gRPC's 4 MiB default.
  args.SetMaxReceiveMessageSize(256 << 20);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> f;
  if (!token.empty()) f.push_back(std::make_unique<BearerFactory>(token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(addr, creds, args, std::move(f));
}

}  // namespace updp::client
