// Progress of a job that lists a source (REGISTER, REFRESH): each stage's entries
// done, of their total, with the rate since the stage began.
#ifndef UPDP_SERVER_CORE_REGISTRATION_PROGRESS_H_
#define UPDP_SERVER_CORE_REGISTRATION_PROGRESS_H_

#include <chrono>
#include <string>

#include "server/core/job_manager.h"
#include "server/core/registration.h"

namespace updp::core {

// Publishes a stage's progress with its rate since the stage began.
class RegistrationProgress {
 public:
  explicit RegistrationProgress(JobContext& ctx) : ctx_(ctx) {}
  // False once the job is asked to stop.
  bool Report(const char* stage, int64_t done, int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (stage_ != stage) {
      stage_ = stage;
      start_ = now;
    }
    const double seconds = std::chrono::duration<double>(now - start_).count();
    Progress p;
    p.stage = stage_;
    p.done = done;
    p.total = total;
    p.rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    ctx_.SetProgress(p);
    return !ctx_.Cancelled();
  }
  ListProgress AsListProgress() {
    return [this](const char* stage, int64_t done, int64_t total) {
      return Report(stage, done, total);
    };
  }

 private:
  JobContext& ctx_;
  std::string stage_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_REGISTRATION_PROGRESS_H_
