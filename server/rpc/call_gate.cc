#include "server/rpc/call_gate.h"

#include <google/protobuf/descriptor.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/rpc/convert.h"

namespace updp::rpc {
namespace {

// The first of these string fields the request sets: what the call acts on.
std::string TargetOf(const google::protobuf::Message& req) {
  const auto* d = req.GetDescriptor();
  const auto* r = req.GetReflection();
  for (const char* name : {"dataset", "name", "job_id", "prompt_name"}) {
    const auto* f = d->FindFieldByName(name);
    if (f && !f->is_repeated() && f->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      std::string v = r->GetString(req, f);
      if (!v.empty()) return v.substr(0, 256);
    }
  }
  return "";
}

// The token of an `authorization: Bearer <token>` header (the scheme is
// case-insensitive, RFC 6750); nullopt without one.
std::optional<std::string> BearerToken(const grpc::CallbackServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return std::nullopt;
  absl::string_view v(it->second.data(), it->second.size());
  constexpr absl::string_view kScheme = "bearer ";
  if (v.size() <= kScheme.size() || !absl::StartsWithIgnoreCase(v, kScheme)) return std::nullopt;
  v.remove_prefix(kScheme.size());
  return std::string(absl::StripAsciiWhitespace(v));
}

}  // namespace

grpc::Status CallGate::Admit(grpc::CallbackServerContext* ctx, const char* method,
                             const google::protobuf::Message* req, CallRecord* rec) {
  rec->method = method;
  rec->peer = ctx->peer();
  if (req) rec->target = TargetOf(*req);
  grpc::Status s;
  if (tokens_) {
    auto token = BearerToken(*ctx);
    std::optional<core::Caller> caller;
    if (token) caller = tokens_->Find(*token);
    if (!token) {
      s = grpc::Status(grpc::UNAUTHENTICATED,
                       "missing credentials: this server needs `authorization: Bearer <token>` "
                       "metadata (updpctl --token or $UPDP_TOKEN)");
    } else if (!caller) {
      s = grpc::Status(grpc::UNAUTHENTICATED, "invalid token");
    } else {
      rec->caller = caller->name;
      rec->role = core::RoleName(caller->role);
      const core::Role need = core::RequiredRole(method);
      if (caller->role < need) {
        s = grpc::Status(grpc::PERMISSION_DENIED,
                         absl::StrCat(method, " needs the ", core::RoleName(need),
                                      " role; caller \"", caller->name, "\" is ",
                                      core::RoleName(caller->role)));
      }
    }
    if (!s.ok()) {
      Finished(*rec, s);
      Audit(*rec, s);  // refusals are audited whatever the method
      return s;
    }
  }
  if (req) {
    if (auto st = CheckRequest(*req, limits_); !st.ok()) {
      s = ToGrpc(st);
      Done(*rec, s);
      return s;
    }
  }
  return grpc::Status::OK;
}

void CallGate::Done(const CallRecord& rec, const grpc::Status& s) {
  Finished(rec, s);
  if (core::ChangesState(rec.method)) Audit(rec, s);
}

void CallGate::Finished(const CallRecord& rec, const grpc::Status& s) {
  if (!metrics_) return;
  metrics_->RpcFinished(
      rec.method, GrpcCodeName(s.error_code()),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - rec.start).count());
}

void CallGate::Audit(const CallRecord& rec, const grpc::Status& s) {
  if (!audit_) return;
  core::AuditRecord a;
  a.caller = rec.caller;
  a.role = rec.role;
  a.method = rec.method;
  a.target = rec.target;
  a.peer = rec.peer;
  a.outcome = GrpcCodeName(s.error_code());
  a.message = s.error_message();
  audit_->Write(a);
}

}  // namespace updp::rpc
