#include "server/rpc/convert.h"

#include "server/util/error_text.h"

namespace updp::rpc {
namespace {

void SetTime(int64_t ms, google::protobuf::Timestamp* t) {
  t->set_seconds(ms / 1000);
  t->set_nanos(static_cast<int32_t>((ms % 1000) * 1000000));
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering. The message is bounded and
  // never carries a backtrace (gRPC sends it as metadata).
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())),
                      CleanErrorText(s.message()));
}

const char* GrpcCodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::OK:
      return "OK";
    case grpc::CANCELLED:
      return "CANCELLED";
    case grpc::UNKNOWN:
      return "UNKNOWN";
    case grpc::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::ABORTED:
      return "ABORTED";
    case grpc::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::INTERNAL:
      return "INTERNAL";
    case grpc::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

void ToProto(const core::DatasetInfo& d, v1::Dataset* out) {
  out->set_name(d.name);
  out->set_source_kind(static_cast<v1::SourceKind>(d.source_kind));
  out->set_source_path(d.source_path);
  out->set_num_items(d.num_items);
  out->set_num_failed(d.num_failed);
  for (const auto& f : d.failed_items) {
    auto* p = out->add_failed_items();
    p->set_item_id(f.item_id);
    p->set_path(f.path);
    p->set_error(f.error);
  }
  for (const auto& s : d.feature_sources) out->add_feature_sources(s);
  SetTime(d.created_ms, out->mutable_created_at());
  out->set_state(d.state == core::DatasetState::kRegistering ? v1::DATASET_STATE_REGISTERING
                                                             : v1::DATASET_STATE_READY);
  out->set_registration_job_id(d.registration_job_id);
  out->set_generation(d.generation);
  out->set_num_missing(d.num_missing);
}

void ToProto(const core::JobInfo& j, v1::Job* out) {
  out->set_job_id(j.id);
  out->set_kind(static_cast<v1::JobKind>(j.kind));
  out->set_state(static_cast<v1::JobState>(j.state));
  out->set_dataset(j.dataset);
  auto* p = out->mutable_progress();
  p->set_stage(j.progress.stage);
  p->set_done(j.progress.done);
  p->set_total(j.progress.total);
  p->set_rate(j.progress.rate);
  p->set_message(j.progress.message);
  if (j.progress.loss.has_value()) p->set_loss(*j.progress.loss);
  out->set_parameters_json(j.params_json);
  SetTime(j.created_ms, out->mutable_created_at());
  if (j.started_ms) SetTime(j.started_ms, out->mutable_started_at());
  if (j.finished_ms) SetTime(j.finished_ms, out->mutable_finished_at());
  out->set_error(j.error);
  out->set_result_json(j.result_json);
  out->set_error_code(j.error_code);
}

void ToProto(const core::PromptInfo& p, v1::Prompt* out) {
  out->set_name(p.name);
  out->set_trained_on_dataset(p.dataset);
  out->set_model_identity(p.model_identity);
  out->set_num_context(p.num_context);
  out->set_num_clusters(p.num_clusters);
  out->set_config_json(p.config_json);
  SetTime(p.created_ms, out->mutable_created_at());
}

core::JobState FromProto(v1::JobState s) { return static_cast<core::JobState>(s); }

grpc::Status RegistrationStatus(const core::JobInfo& j) {
  switch (j.state) {
    case core::JobState::kFailed:
      return grpc::Status(j.error_code > 0 && j.error_code <= 16
                              ? static_cast<grpc::StatusCode>(j.error_code)
                              : grpc::INTERNAL,
                          j.error);
    case core::JobState::kCancelled:
      return grpc::Status(grpc::CANCELLED,
                          "registration job " + j.id + " was " + j.progress.message);
    default:  // INTERRUPTED: the server is stopping
      return grpc::Status(grpc::UNAVAILABLE,
                          "registration job " + j.id + ": " + j.progress.message);
  }
}

}  // namespace updp::rpc
