// UploadEmbeddings: a client-streaming call whose messages are checked and written
// (core::EmbeddingsUpload) on the WorkPool, one at a time: the next message is read
// only after the previous one is on disk, so a fast client never queues more than
// one message in the server. After the stream's end the upload is registered as a
// REGISTER job and the call answers when the job ends, like a synchronous
// RegisterDataset.
#ifndef UPDP_SERVER_RPC_UPLOAD_REACTOR_H_
#define UPDP_SERVER_RPC_UPLOAD_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include "proto/updp/v1/updp.pb.h"
#include "server/rpc/call_gate.h"
#include "server/core/server_core.h"
#include "server/core/work_pool.h"

namespace updp::rpc {

// The reactor of one admitted call (it deletes itself when the call is done, after
// gate->Done). Each message is checked against the gate's limits.
grpc::ServerReadReactor<v1::UploadEmbeddingsRequest>* NewUploadReactor(
    grpc::CallbackServerContext* ctx, core::ServerCore* core, core::WorkPool* pool,
    CallGate* gate, const CallRecord& rec, v1::Dataset* resp);

}  // namespace updp::rpc

#endif  // UPDP_SERVER_RPC_UPLOAD_REACTOR_H_
