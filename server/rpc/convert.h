// proto <-> core conversions and absl::Status -> grpc::Status.
#ifndef UPDP_SERVER_RPC_CONVERT_H_
#define UPDP_SERVER_RPC_CONVERT_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "proto/updp/v1/updp.pb.h"
#include "server/core/types.h"

namespace updp::rpc {

grpc::Status ToGrpc(const absl::Status& s);
const char* GrpcCodeName(grpc::StatusCode c);

void ToProto(const core::DatasetInfo& d, v1::Dataset* out);
void ToProto(const core::JobInfo& j, v1::Job* out);
void ToProto(const core::PromptInfo& p, v1::Prompt* out);
core::JobState FromProto(v1::JobState s);

// The status a synchronous registration (RegisterDataset, UploadEmbeddings) answers
// for its REGISTER job's end other than SUCCEEDED.
grpc::Status RegistrationStatus(const core::JobInfo& j);

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_CONVERT_H_
