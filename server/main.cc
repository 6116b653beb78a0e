// updp-server: flags, signals and graceful shutdown around app::App.
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/app/app.h"
#include "server/core/metrics.h"
#include "server/rpc/tls.h"
#include "server/util/flags_help.h"
#include "server/util/openmp_env.h"

ABSL_FLAG(int, port, 50051, "gRPC port");
ABSL_FLAG(std::string, host, "0.0.0.0", "gRPC listen address");
ABSL_FLAG(int, metrics_port, 9464, "Prometheus /metrics port (0 disables)");
ABSL_FLAG(std::string, metrics_host, "",
          "/metrics listen address; empty: 127.0.0.1 when TLS is on (plain HTTP is not "
          "exposed by accident), else --host");
ABSL_FLAG(std::string, tls_cert, "",
          "server certificate chain (PEM): serve gRPC over TLS (needs --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "private key (PEM) of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "CA certificates (PEM): require and verify client certificates signed by them "
          "(mTLS; needs --tls_cert)");
ABSL_FLAG(std::string, data_dir, "./data", "SQLite database and feature files");
ABSL_FLAG(std::string, model_dir, "",
          "BLIP-2 checkpoint folder (config.json, model.safetensors, vocab.txt); empty: no "
          "model, only datasets that bring their own embeddings");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda | cuda:N");
ABSL_FLAG(std::string, precision, "auto",
          "vision encoder dtype: auto (bf16 on CUDA) | fp32 | bf16 | fp16");
ABSL_FLAG(
    std::string, attention, "auto",
    "attention kernel: auto (fused scaled-dot-product attention on LibTorch >= 2) | math | sdpa");
ABSL_FLAG(bool, cuda_graphs, true,
          "replay the image encoder as CUDA graphs per batch shape (CUDA only)");
ABSL_FLAG(
    std::string, qformer_precision, "auto",
    "Q-Former dtype when embedding images: auto (bf16 with a bf16 ViT on CUDA) | fp32 | bf16; "
    "prompt learning always runs it in fp32");
ABSL_FLAG(bool, fused_gelu, true,
          "CUDA, bf16/fp16 ViT: fc1+GELU as one GEMM with cuBLASLt's tanh-GELU epilogue "
          "(false: the exact GELU as a separate kernel; fp32 always uses the exact form)");
ABSL_FLAG(std::vector<std::string>, allowed_roots, {},
          "comma-separated directories that dataset paths must resolve into");
ABSL_FLAG(int, queue_capacity, 64, "maximum queued jobs (RESOURCE_EXHAUSTED beyond)");
ABSL_FLAG(int, cpu_jobs, 1, "selection jobs running at once");
ABSL_FLAG(int, register_jobs, 2,
          "dataset registrations (REGISTER jobs) running at once, on their own executors");
ABSL_FLAG(int, cpu_threads, 0,
          "threads a selection computes on (its thread pool and LibTorch's intra-op "
          "threads; 0 = one per core)");
ABSL_FLAG(int, batch_size, 32, "default images per model batch");
ABSL_FLAG(int, chunk_size, 1024, "items per feature chunk (the unit of resume)");
ABSL_FLAG(int, decode_threads, 2, "image decoding threads");
ABSL_FLAG(int64_t, prompt_cache_mb, 8192, "memory budget for cached ViT views in prompt learning");
ABSL_FLAG(int, shutdown_grace_ms, 30000,
          "how long running jobs get to reach a checkpoint on SIGTERM; past it the process "
          "exits at once and the job becomes INTERRUPTED at the next start");
ABSL_FLAG(int, rpc_threads, 8,
          "threads for request work that must not block gRPC (registrations, imports, submits)");
ABSL_FLAG(int64_t, max_upload_bytes, int64_t{64} << 30,
          "largest UploadEmbeddings call, in bytes of values as sent (rows x dim x 2, 4 or 8); "
          "the call needs about as much free space under --data_dir/uploads while it runs");
ABSL_FLAG(int, rpc_queue, 256, "queued request work beyond which calls get RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, auth_tokens, "",
          "file of `token role [name]` lines (roles reader < operator < admin): every updp.v1 "
          "call then needs `authorization: Bearer <token>` metadata; empty: no authentication");
ABSL_FLAG(std::string, audit_log, "-",
          "where the audit trail goes (a JSON line per state-changing or refused call): a file "
          "to append to, or - for standard error");
ABSL_FLAG(int64_t, max_request_bytes, int64_t{64} << 20,
          "largest message a client may send (RESOURCE_EXHAUSTED beyond); 64 MiB holds a prompt "
          "artifact");
ABSL_FLAG(int64_t, max_labeled_ids, 1000000, "most labeled_ids in one Select (at most 1,000,000)");
ABSL_FLAG(int64_t, max_page_size, 10000, "largest page_size or limit of a listing (at most 10,000)");
ABSL_FLAG(int64_t, max_name_length, 64, "longest dataset or prompt name in a request (at most 64)");
ABSL_FLAG(int64_t, max_string_bytes, 4096, "longest other string in a request (paths, ids)");
ABSL_FLAG(int64_t, max_watchers_per_job, 1000, "open WatchJob streams of one job");
ABSL_FLAG(int64_t, max_watchers, 10000, "open WatchJob streams in all");

namespace {
// The thread that waits for the stop signals (set before the forwarding handler is).
pthread_t g_stop_signal_thread;

// A process-directed SIGTERM goes to any thread that does not block it, and threads that
// libraries start before main() (OpenBLAS's pool) do not block it: with the default action
// such a thread would end the process without the drain or, as PID 1 of a container, the
// kernel drops the signal and the server never stops. This handler, which runs in such a
// thread, hands the signal to the waiting thread (pthread_kill is async-signal-safe).
extern "C" void ForwardStopSignal(int s) { pthread_kill(g_stop_signal_thread, s); }
}  // namespace

int main(int argc, char** argv) {
  updp::PreferPassiveOpenMp(argv);  // before any OpenMP work; see openmp_env.h
  absl::SetProgramUsageMessage("updp-server --data_dir DIR --model_dir DIR --allowed_roots A,B");
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  // Block the stop signals in every thread; one thread waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // The signal thread runs from the start: a stop signal while the model loads (minutes
  // for ViT-g) ends the process at once; there is no job running to drain yet.
  std::mutex sig_mu;
  std::condition_variable sig_cv;
  int sig = 0;
  bool serving = false;
  // It lives as long as the process: ForwardStopSignal may target it at any time, and
  // pthread_kill on a thread that has ended is undefined. Signals after the first are
  // taken and dropped (the drain is already under way); they touch only the thread's own
  // copy of `set`, never main's locals, which may be gone by then.
  std::thread sig_thread([&, set] {
    for (bool first = true;; first = false) {
      int s = 0;
      sigwait(&set, &s);
      if (!first) continue;
      std::lock_guard<std::mutex> l(sig_mu);
      if (!serving) {
        std::cerr << "updp-server: signal " << s << " during start-up; exiting\n";
        std::cerr.flush();
        _exit(0);
      }
      sig = s;
      sig_cv.notify_all();
    }
  });
  g_stop_signal_thread = sig_thread.native_handle();
  struct sigaction forward = {};
  forward.sa_handler = ForwardStopSignal;
  sigemptyset(&forward.sa_mask);
  sigaction(SIGINT, &forward, nullptr);
  sigaction(SIGTERM, &forward, nullptr);
  sig_thread.detach();

  updp::core::ServerOptions o;
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  o.model_dir = absl::GetFlag(FLAGS_model_dir);
  o.device = absl::GetFlag(FLAGS_device);
  o.precision = absl::GetFlag(FLAGS_precision);
  o.attention = absl::GetFlag(FLAGS_attention);
  o.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  o.qformer_precision = absl::GetFlag(FLAGS_qformer_precision);
  o.fused_gelu = absl::GetFlag(FLAGS_fused_gelu);
  o.allowed_roots = absl::GetFlag(FLAGS_allowed_roots);
  o.queue_capacity = absl::GetFlag(FLAGS_queue_capacity);
  o.cpu_jobs = absl::GetFlag(FLAGS_cpu_jobs);
  o.register_jobs = absl::GetFlag(FLAGS_register_jobs);
  o.cpu_threads = absl::GetFlag(FLAGS_cpu_threads);
  o.embed_batch_size = absl::GetFlag(FLAGS_batch_size);
  o.chunk_size = absl::GetFlag(FLAGS_chunk_size);
  o.decode_threads = absl::GetFlag(FLAGS_decode_threads);
  o.prompt_cache_bytes = absl::GetFlag(FLAGS_prompt_cache_mb) << 20;
  o.max_upload_bytes = absl::GetFlag(FLAGS_max_upload_bytes);
  if (o.allowed_roots.empty()) {
    std::cerr << "updp-server: warning: --allowed_roots is empty; every dataset path will be "
                 "refused (PERMISSION_DENIED)\n";
  }

  // Before anything listens or loads: bad certificate files stop the start here.
  updp::rpc::TlsFiles tls;
  tls.cert = absl::GetFlag(FLAGS_tls_cert);
  tls.key = absl::GetFlag(FLAGS_tls_key);
  tls.client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  auto creds = updp::rpc::ServerCredentialsFrom(tls);
  if (!creds.ok()) {
    std::cerr << "updp-server: " << creds.status().message() << "\n";
    return 1;
  }

  updp::app::AppOptions ao;
  ao.rpc.limits.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  ao.rpc.limits.max_labeled_ids = absl::GetFlag(FLAGS_max_labeled_ids);
  ao.rpc.limits.max_page_size = absl::GetFlag(FLAGS_max_page_size);
  ao.rpc.limits.max_name_length = absl::GetFlag(FLAGS_max_name_length);
  ao.rpc.limits.max_string_bytes = absl::GetFlag(FLAGS_max_string_bytes);
  ao.rpc.limits.max_watchers_per_job = absl::GetFlag(FLAGS_max_watchers_per_job);
  ao.rpc.limits.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  if (auto st = updp::rpc::ValidateLimits(ao.rpc.limits); !st.ok()) {
    std::cerr << "updp-server: " << st.message() << "\n";
    return 1;
  }
  if (const std::string f = absl::GetFlag(FLAGS_auth_tokens); !f.empty()) {
    auto tokens = updp::core::TokenTable::Load(f);
    if (!tokens.ok()) {
      std::cerr << "updp-server: " << tokens.status().message() << "\n";
      return 1;
    }
    std::cerr << "updp-server: token authentication on: " << tokens->size() << " tokens from "
              << f << "\n";
    if (!tls.enabled()) {
      std::cerr << "updp-server: warning: --auth_tokens without --tls_cert: tokens travel in "
                   "plaintext; use TLS unless a trusted proxy terminates it\n";
    }
    ao.rpc.tokens = std::make_shared<const updp::core::TokenTable>(std::move(*tokens));
  }
  auto audit = updp::core::AuditLog::Open(absl::GetFlag(FLAGS_audit_log));
  if (!audit.ok()) {
    std::cerr << "updp-server: " << audit.status().message() << "\n";
    return 1;
  }
  ao.rpc.audit = std::move(*audit);

  updp::core::Metrics metrics;
  if (int mp = absl::GetFlag(FLAGS_metrics_port); mp > 0) {
    std::string mh = absl::GetFlag(FLAGS_metrics_host);
    if (mh.empty()) mh = tls.enabled() ? "127.0.0.1" : absl::GetFlag(FLAGS_host);
    if (!metrics.Expose(mh, mp)) {
      std::cerr << "updp-server: metrics " << mh << ":" << mp << ": cannot bind\n";
      return 1;
    }
    std::cerr << "updp-server: metrics on http://" << mh << ":" << mp << "/metrics\n";
  }
  const std::string address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  ao.rpc.pool_threads = absl::GetFlag(FLAGS_rpc_threads);
  ao.rpc.pool_queue = absl::GetFlag(FLAGS_rpc_queue);
  if (tls.enabled()) ao.rpc.credentials = *creds;
  ao.before_model_load = [&](int port) {
    std::cerr << "updp-server: listening on " << absl::GetFlag(FLAGS_host) << ":" << port
              << " (health NOT_SERVING until the model is loaded)\n";
  };
  auto app = updp::app::App::Start(o, address, &metrics, ao);
  if (!app.ok()) {
    std::cerr << "updp-server: " << app.status().message() << "\n";
    return 1;
  }
  std::cerr << "updp-server: serving on " << absl::GetFlag(FLAGS_host) << ":" << (*app)->port()
            << (tls.client_ca.empty() ? (tls.enabled() ? " (TLS)" : " (plaintext)")
                                      : " (mTLS: client certificates required)")
            << (o.model_dir.empty() ? " (no model)" : " with model " + o.model_dir) << ", device "
            << o.device << ", data_dir " << o.data_dir << "\n";
  {
    std::unique_lock<std::mutex> l(sig_mu);
    serving = true;
    sig_cv.wait(l, [&] { return sig != 0; });
  }
  const int grace = absl::GetFlag(FLAGS_shutdown_grace_ms);
  std::cerr << "updp-server: signal " << sig << ", draining (grace " << grace << " ms)\n";
  // In-flight requests (a long registration) get the grace too; past twice the grace
  // the process ends regardless, so a stop always completes.
  std::thread([grace] {
    std::this_thread::sleep_for(std::chrono::milliseconds(2 * int64_t{grace} + 10000));
    std::cerr << "updp-server: shutdown did not finish in time; exiting now\n";
    std::cerr.flush();
    _exit(1);
  }).detach();
  if (!(*app)->Shutdown(grace)) {
    // A job did not reach a checkpoint in time. Exit now, without running a single
    // destructor under its worker; it is INTERRUPTED at the next start.
    std::cerr << "updp-server: a job did not stop within the grace; exiting now (it resumes "
                 "as INTERRUPTED)\n";
    std::cerr.flush();
    _exit(1);
  }
  std::cerr << "updp-server: stopped\n";
  return 0;
}
