#include "server/rpc/limits.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include "absl/strings/str_cat.h"
#include "server/core/names.h"

namespace updp::rpc {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

bool IsNameField(const std::string& f) {
  return f == "name" || f == "dataset" || f == "prompt" || f == "prompt_name";
}

absl::Status TooLong(const FieldDescriptor* f, size_t size, int64_t limit, const char* flag) {
  return absl::InvalidArgumentError(absl::StrCat(f->name(), ": ", size,
                                                 " bytes is over the limit of ", limit, " (--",
                                                 flag, ")"));
}

absl::Status CheckString(const FieldDescriptor* f, const std::string& v, const RequestLimits& l) {
  if (IsNameField(f->name())) {
    if (static_cast<int64_t>(v.size()) > l.max_name_length) {
      return TooLong(f, v.size(), l.max_name_length, "max_name_length");
    }
  } else if (static_cast<int64_t>(v.size()) > l.max_string_bytes) {
    return TooLong(f, v.size(), l.max_string_bytes, "max_string_bytes");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLimits(const RequestLimits& l) {
  auto range = [](const char* flag, int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v < lo || v > hi) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " ", v, ": must be in [", lo, ", ", hi, "]"));
    }
    return absl::OkStatus();
  };
  for (auto s : {range("max_request_bytes", l.max_request_bytes, 1 << 20, int64_t{2047} << 20),
                 range("max_labeled_ids", l.max_labeled_ids, 1, 1000000),
                 range("max_page_size", l.max_page_size, 1, 10000),
                 range("max_name_length", l.max_name_length, 1, core::kMaxNameLength),
                 range("max_string_bytes", l.max_string_bytes, 64, 1 << 20),
                 range("max_watchers_per_job", l.max_watchers_per_job, 1, 1000000),
                 range("max_watchers", l.max_watchers, 1, 1000000)}) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CheckRequest(const Message& req, const RequestLimits& l) {
  const auto* d = req.GetDescriptor();
  const auto* r = req.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) {
      const int n = r->FieldSize(req, f);
      if (f->name() == "labeled_ids" && n > l.max_labeled_ids) {
        return absl::InvalidArgumentError(absl::StrCat("labeled_ids: ", n,
                                                       " ids is over the limit of ",
                                                       l.max_labeled_ids, " (--max_labeled_ids)"));
      }
      for (int k = 0; k < n; ++k) {
        if (f->type() == FieldDescriptor::TYPE_STRING) {
          if (auto s = CheckString(f, r->GetRepeatedString(req, f, k), l); !s.ok()) return s;
        } else if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
          if (auto s = CheckRequest(r->GetRepeatedMessage(req, f, k), l); !s.ok()) return s;
        }
      }
      continue;
    }
    switch (f->type()) {
      case FieldDescriptor::TYPE_STRING:
        if (auto s = CheckString(f, r->GetString(req, f), l); !s.ok()) return s;
        break;
      case FieldDescriptor::TYPE_MESSAGE:
        if (r->HasField(req, f)) {
          if (auto s = CheckRequest(r->GetMessage(req, f), l); !s.ok()) return s;
        }
        break;
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_INT64:
        if (f->name() == "page_size" || f->name() == "limit") {
          const int64_t v = f->type() == FieldDescriptor::TYPE_INT32 ? r->GetInt32(req, f)
                                                                     : r->GetInt64(req, f);
          if (v > l.max_page_size) {
            return absl::InvalidArgumentError(absl::StrCat(f->name(), ": ", v,
                                                           " is over the limit of ",
                                                           l.max_page_size, " (--max_page_size)"));
          }
        }
        break;
      default:
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status WatcherSlots::Acquire(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (open_ >= total_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many open WatchJob streams: ", open_, " (--max_watchers ", total_,
        "); poll GetJob or retry later"));
  }
  int64_t& n = by_job_[job_id];
  if (n >= per_job_) {
    return absl::ResourceExhaustedError(absl::StrCat("too many open WatchJob streams of job ",
                                                     job_id.substr(0, 64), ": ", n,
                                                     " (--max_watchers_per_job ", per_job_, ")"));
  }
  ++n;
  ++open_;
  return absl::OkStatus();
}

void WatcherSlots::Release(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_job_.find(job_id);
  if (it == by_job_.end()) return;
  if (--it->second == 0) by_job_.erase(it);
  --open_;
}

int64_t WatcherSlots::open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

}  // namespace updp::rpc
