// updpctl: the command-line client of updp-server.
//
//   updpctl [--addr HOST:PORT] [--tls] [--tls_ca F] [--tls_cert F --tls_key F]
//           [--token T | --token_file F] COMMAND ...
//           (default $UPDP_ADDR or localhost:50051; $UPDP_TLS, $UPDP_TLS_CA, ...,
//           $UPDP_TOKEN, $UPDP_TOKEN_FILE)
//   dataset register NAME (--images DIR | --manifest FILE | --embeddings FILE.npy [--ids FILE])
//                    [--async]
//   dataset list | show NAME | delete NAME
//   dataset items NAME [--out FILE|-]
//   dataset attach-features NAME --from DIR [--async]
//   embed DATASET [--batch-size N] [--wait]
//   prompt learn DATASET --name P [--epochs N] [--clusters K] [--budget B] [--context M]
//                [--batch-size N] [--lr X] [--views V] [--seed S] [--max-items N] [--wait]
//   prompt list | export NAME --out FILE | import NAME FILE
//   select DATASET --budget B --strategy S [--prompt P] [--rule kmeans|cluster-head]
//          [--features F] [--seed N] [--labeled FILE] [--out FILE|-] [--format F] [--wait]
//   selection get JOB [--format csv|json|paths|labelstudio|cvat|fiftyone] [--out FILE|-]
//                     [--prefix P] [--relative-to DIR] [--data-key K]
//   report JOB --out FILE.html|- [--thumbnail-size N] [--max-thumbnails N]
//   jobs list [--dataset D] [--state S] | show ID | watch ID | cancel ID | resume ID
//   health [--service NAME] [--timeout SECONDS]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "client/channel.h"
#include "client/client_lib.h"
#include "client/duplicates_out.h"
#include "client/labeled_list.h"
#include "client/report_fetch.h"
#include "client/report_html.h"
#include "client/tls_channel.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "server/select/names.h"
#include "server/util/shard_format.h"

namespace {

using namespace updp;

constexpr char kUsage[] = R"(usage: updpctl [--addr HOST:PORT] [TLS FLAGS] COMMAND ...
  dataset register NAME (--images DIR | --manifest FILE | --embeddings FILE.npy [--ids FILE])
                   [--async]   (progress on stderr; --async: print the job id and return)
  dataset list | show NAME | delete NAME
  dataset items NAME [--out FILE|-]    (the item list for updp-embed-shard, JSON Lines)
  dataset attach-features NAME --from DIR [--async]   (updp-embed-shard output, in place)
  dataset refresh NAME [--async]
      rescan the dataset's directory or manifest: new files become new items (ids of
      existing items never change), gone files are marked missing and never picked;
      then `embed` embeds only the new items and `select --only-new` picks among them
  dataset duplicates NAME --threshold T [--features F] [--format text|csv|json]
                     [--out FILE|-] [--async]
      groups of near-duplicate items (cosine similarity >= T, e.g. 0.95), each led by
      its representative (*); a summary on stderr
  embed DATASET [--batch-size N] [--wait]
  prompt learn DATASET --name P [--epochs N] [--clusters K] [--budget B] [--context M]
               [--batch-size N] [--lr X] [--views V] [--seed S] [--max-items N] [--wait]
  prompt list | export NAME --out FILE | import NAME FILE
  select DATASET --budget B --strategy S [--prompt P] [--rule kmeans|cluster-head]
         [--features F] [--seed N] [--labeled FILE [--strict-labeled]] [--dedup T]
         [--only-new] [--out FILE|-] [--format F] [--wait]
      --only-new: pick only among the items the newest `dataset refresh` added
      --dedup T: no two picks, nor a pick and a labeled item, with cosine similarity >= T
      --labeled: picks CSV/JSON written by updpctl, a Label Studio export of its tasks,
      a JSON list of ids, or text with one id (or /absolute/path) per line; ids that are
      not items are ignored with a warning (an error with --strict-labeled)
  selection get JOB [--format F] [--out FILE|-]   (default: CSV on stdout)
      F: csv | json | paths | labelstudio | cvat | fiftyone; the last three name images
      as [--prefix P] + the path [made relative to --relative-to DIR]
      (labelstudio: [--data-key image], the labeling config's $variable)
  report JOB --out FILE.html|- [--thumbnail-size N] [--max-thumbnails N]
      one self-contained HTML page: the dataset and job, clusters (every item under its
      nearest pick), a 2-D map of the features with the picks, thumbnails of the picks
      by cluster (N: longest side, default 128, at most 512; at most 2000 thumbnails)
  jobs list [--dataset D] [--state S] | show ID | watch ID | cancel ID | resume ID
  health [--service NAME] [--timeout SECONDS]   (exit 0 only when SERVING)
The server address comes from --addr, else $UPDP_ADDR, else localhost:50051.
TLS (any of these set: the connection uses TLS; each flag wins over its variable):
  --tls             TLS with the system roots and no client certificate; $UPDP_TLS=1
  --tls_ca FILE     CA certificates (PEM) that sign the server's; $UPDP_TLS_CA
                    (default: the system roots)
  --tls_cert FILE   client certificate (PEM), for a server with --tls_client_ca; $UPDP_TLS_CERT
  --tls_key FILE    its private key (PEM); $UPDP_TLS_KEY
Token (a server with --auth_tokens): sent as `authorization: Bearer TOKEN` on every call:
  --token TOKEN     (visible to other local users in the process list: prefer the next two)
  --token_file FILE the first line of FILE; else $UPDP_TOKEN, else $UPDP_TOKEN_FILE
)";

// The usage text with the strategies (from the one list of their names).
std::string Usage() {
  std::string u = kUsage;
  u += "Strategies (select --strategy):\n";
  for (const auto& st : select::StrategyNameList()) {
    u += "  " + std::string(st.name) +
         std::string(12 - std::min<size_t>(11, std::strlen(st.name)), ' ') + st.summary + "\n";
  }
  return u;
}

const std::set<std::string> kBoolFlags = {"wait",           "help",     "async",
                                          "strict-labeled", "only-new", "tls"};

struct Args {
  std::vector<std::string> pos;
  std::map<std::string, std::string> flags;
  bool Has(const std::string& k) const { return flags.count(k) > 0; }
  std::string Get(const std::string& k, const std::string& d = "") const {
    auto it = flags.find(k);
    return it == flags.end() ? d : it->second;
  }
};

const char* StatusName(grpc::StatusCode c) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  int i = static_cast<int>(c);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

[[noreturn]] void Die(const std::string& msg, int code = 2) {
  std::cerr << "updpctl: " << msg << "\n";
  std::exit(code);
}

int Fail(const grpc::Status& s) {
  std::cerr << "updpctl: " << StatusName(s.error_code()) << ": " << s.error_message() << "\n";
  return 1;
}

int64_t Int(const Args& a, const std::string& k, int64_t d) {
  if (!a.Has(k)) return d;
  int64_t v;
  if (!absl::SimpleAtoi(a.Get(k), &v)) Die("--" + k + ": not an integer: " + a.Get(k));
  return v;
}

double Real(const Args& a, const std::string& k, double d) {
  if (!a.Has(k)) return d;
  double v;
  if (!absl::SimpleAtod(a.Get(k), &v)) Die("--" + k + ": not a number: " + a.Get(k));
  return v;
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      std::string k = s.substr(2);
      auto eq = k.find('=');
      if (eq != std::string::npos) {
        a.flags[k.substr(0, eq)] = k.substr(eq + 1);
      } else if (kBoolFlags.count(k)) {
        a.flags[k] = "1";
      } else {
        if (i + 1 >= argc) Die("--" + k + " needs a value");
        a.flags[k] = argv[++i];
      }
    } else {
      a.pos.push_back(s);
    }
  }
  return a;
}

std::string Need(const Args& a, size_t i, const char* what) {
  if (a.pos.size() <= i) Die(std::string("missing ") + what + "\n" + Usage());
  return a.pos[i];
}

void PrintDataset(const v1::Dataset& d) {
  std::cout << d.name() << "  " << v1::SourceKind_Name(d.source_kind()) << "  " << d.source_path()
            << "\n  items: " << d.num_items() << "  failed: " << d.num_failed();
  if (d.generation() > 0 || d.num_missing() > 0) {
    std::cout << "  missing: " << d.num_missing() << "  generation: " << d.generation();
  }
  std::cout << "\n  features:";
  for (const auto& f : d.feature_sources()) std::cout << " " << f;
  std::cout << "\n";
  for (const auto& f : d.failed_items()) {
    std::cout << "  failed " << f.item_id() << ": " << f.error() << "\n";
  }
}

class Cli {
 public:
  explicit Cli(std::shared_ptr<grpc::Channel> channel)
      : channel_(std::move(channel)), stub_(v1::Updp::NewStub(channel_)) {}

  // grpc.health.v1 check, for container HEALTHCHECKs and scripts.
  int Health(const Args& a) {
    auto stub = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(Real(a, "timeout", 3) * 1000)));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(a.Get("service", "updp.v1.Updp"));
    grpc::health::v1::HealthCheckResponse resp;
    auto s = stub->Check(&ctx, req, &resp);
    if (!s.ok()) return Fail(s);
    std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()) << "\n";
    return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
  }

  // Prints the started job to `info`; with `wait`, follows it (progress on stderr: a
  // bar on a terminal, else a line per update) and fails unless it SUCCEEDED.
  int Started(const v1::Job& j, bool wait, v1::Job* final_job = nullptr,
              std::ostream& info = std::cout) {
    info << client::JobLine(j) << "\n";
    if (!wait) return 0;
    v1::Job last = j;
    grpc::Status s =
        client::Watch(stub_.get(), j.job_id(), isatty(STDERR_FILENO), std::cerr, &last);
    if (!s.ok()) return Fail(s);
    if (final_job) *final_job = last;
    if (last.state() != v1::SUCCEEDED) {
      std::cerr << "updpctl: job " << last.job_id() << " ended " << client::StateName(last.state())
                << (last.error().empty() ? "" : ": " + last.error()) << "\n";
      return 1;
    }
    return 0;
  }

  int Dataset(const Args& a) {
    std::string sub = Need(a, 1, "dataset subcommand");
    grpc::ClientContext ctx;
    if (sub == "register") {
      v1::RegisterDatasetRequest req;
      req.set_name(Need(a, 2, "dataset NAME"));
      int sources = a.Has("images") + a.Has("manifest") + a.Has("embeddings");
      if (sources != 1)
        Die("dataset register needs exactly one of --images, --manifest, --embeddings");
      if (a.Has("images")) req.mutable_images()->set_path(a.Get("images"));
      if (a.Has("manifest")) req.mutable_manifest()->set_path(a.Get("manifest"));
      if (a.Has("embeddings")) {
        req.mutable_embeddings()->set_path(a.Get("embeddings"));
        req.mutable_embeddings()->set_ids_path(a.Get("ids"));
      }
      // Always queued at once; without --async the REGISTER job is followed here, so
      // that its progress shows (the server's synchronous form would only answer at
      // the end).
      req.set_async(true);
      v1::Dataset d;
      auto s = stub_->RegisterDataset(&ctx, req, &d);
      if (!s.ok()) return Fail(s);
      if (a.Has("async")) {
        std::cout << d.registration_job_id() << "\n";
        return 0;
      }
      return FollowRegistration(d);
    }
    if (sub == "list") {
      v1::ListDatasetsResponse r;
      auto s = stub_->ListDatasets(&ctx, {}, &r);
      if (!s.ok()) return Fail(s);
      for (const auto& d : r.datasets()) {
        std::cout << d.name() << "  items " << d.num_items() << "  failed " << d.num_failed()
                  << "  " << v1::SourceKind_Name(d.source_kind()) << "\n";
      }
      return 0;
    }
    if (sub == "show") {
      v1::GetDatasetRequest req;
      req.set_name(Need(a, 2, "dataset NAME"));
      v1::Dataset d;
      auto s = stub_->GetDataset(&ctx, req, &d);
      if (!s.ok()) return Fail(s);
      PrintDataset(d);
      return 0;
    }
    if (sub == "delete") {
      v1::DeleteDatasetRequest req;
      req.set_name(Need(a, 2, "dataset NAME"));
      v1::DeleteDatasetResponse r;
      auto s = stub_->DeleteDataset(&ctx, req, &r);
      if (!s.ok()) return Fail(s);
      std::cout << "deleted " << req.name() << "\n";
      return 0;
    }
    if (sub == "items") return Items(Need(a, 2, "dataset NAME"), a.Get("out", "-"));
    if (sub == "attach-features") {
      v1::AttachFeaturesRequest req;
      req.set_dataset(Need(a, 2, "dataset NAME"));
      if (!a.Has("from")) Die("dataset attach-features needs --from DIR");
      req.set_dir(a.Get("from"));
      v1::Job j;
      auto s = stub_->AttachFeatures(&ctx, req, &j);
      if (!s.ok()) return Fail(s);
      if (a.Has("async")) {
        std::cout << j.job_id() << "\n";
        return 0;
      }
      return FollowThenShow(j.job_id(), req.dataset());
    }
    if (sub == "duplicates") return Duplicates(a);
    if (sub == "refresh") return Refresh(a);
    Die("unknown dataset subcommand '" + sub + "'");
  }

  // dataset refresh NAME: a REFRESH job, followed (progress on stderr), then the
  // dataset and what changed.
  int Refresh(const Args& a) {
    v1::RefreshDatasetRequest req;
    req.set_name(Need(a, 2, "dataset NAME"));
    grpc::ClientContext ctx;
    v1::Job j;
    if (auto s = stub_->RefreshDataset(&ctx, req, &j); !s.ok()) return Fail(s);
    if (a.Has("async")) {
      std::cout << j.job_id() << "\n";
      return 0;
    }
    if (int rc = FollowThenShow(j.job_id(), req.name()); rc != 0) return rc;
    grpc::ClientContext jctx;
    v1::GetJobRequest jreq;
    jreq.set_job_id(j.job_id());
    v1::Job done;
    if (auto s = stub_->GetJob(&jctx, jreq, &done); !s.ok()) return Fail(s);
    const auto r = nlohmann::json::parse(done.result_json(), nullptr, false);
    if (r.is_object()) {
      std::cerr << "updpctl: " << r.value("added", 0) << " new item(s), "
                << r.value("now_missing", 0) << " newly missing, " << r.value("found_again", 0)
                << " found again (generation " << r.value("generation", 0) << ")\n";
    }
    return 0;
  }

  // dataset duplicates NAME --threshold T: a DUPLICATES job, followed (progress on
  // stderr), then its groups on stdout (or --out) and a summary on stderr.
  int Duplicates(const Args& a) {
    v1::FindDuplicatesRequest req;
    req.set_dataset(Need(a, 2, "dataset NAME"));
    if (!a.Has("threshold")) Die("dataset duplicates needs --threshold T (e.g. 0.95)");
    req.set_threshold(Real(a, "threshold", 0));
    req.set_features(a.Get("features"));
    client::DuplicatesFormat format = client::DuplicatesFormat::kText;
    if (a.Has("format") && !client::ParseDuplicatesFormat(a.Get("format"), &format))
      Die("--format: '" + a.Get("format") + "' is not text, csv or json");
    grpc::ClientContext ctx;
    v1::Job j;
    if (auto s = stub_->FindDuplicates(&ctx, req, &j); !s.ok()) return Fail(s);
    if (a.Has("async")) {
      std::cout << j.job_id() << "\n";
      return 0;
    }
    if (int rc = Started(j, /*wait=*/true, nullptr, std::cerr); rc != 0) return rc;
    const std::string out = a.Get("out", "-");
    client::DuplicatesSummary sum;
    if (auto s = client::WriteDuplicates(stub_.get(), j.job_id(), out, format, &sum); !s.ok())
      return Fail(s);
    std::cerr << "updpctl: " << sum.groups << " group(s) of near-duplicates, " << sum.items
              << " items in all, at similarity >= " << req.threshold()
              << (out == "-" ? "" : " (written to " + out + ")") << "\n";
    return 0;
  }

  // Writes the dataset's items file (shard_format.h) to `out` (a temp file renamed
  // into place, so a half-written file never looks complete) or to stdout for "-".
  int Items(const std::string& name, const std::string& out) {
    const bool to_stdout = out == "-";
    const std::string tmp = out + ".tmp";
    std::ofstream file;
    if (!to_stdout) {
      file.open(tmp, std::ios::binary | std::ios::trunc);
      if (!file) Die("--out: cannot write '" + tmp + "'", 1);
    }
    std::ostream& os = to_stdout ? std::cout : file;
    int64_t written = 0, total = -1;
    auto s = ForEachItemPage(name, [&](const v1::ListItemsResponse& r) {
      if (total < 0) {
        total = r.total();
        os << shard::ItemsHeaderLine({name, r.total(), r.chunk_size()}) << "\n";
      }
      for (const auto& it : r.items()) {
        os << shard::ItemLine({it.index(), it.item_id(), it.path()}) << "\n";
        ++written;
      }
    });
    if (!s.ok()) {
      if (!to_stdout) std::remove(tmp.c_str());
      return Fail(s);
    }
    os.flush();
    if (!os || written != total) {
      if (!to_stdout) std::remove(tmp.c_str());
      Die("items of '" + name + "': wrote " + std::to_string(written) + " of " +
              std::to_string(total),
          1);
    }
    if (!to_stdout) {
      file.close();
      if (std::rename(tmp.c_str(), out.c_str()) != 0)
        Die("--out: cannot rename to '" + out + "'", 1);
      std::cerr << "updpctl: " << written << " items of '" << name << "' written to " << out
                << "\n";
    }
    return 0;
  }

  // Shows the REGISTER job's progress on stderr (a bar on a terminal, else a line per
  // update) and prints the READY dataset, or fails with the job's status.
  int FollowRegistration(const v1::Dataset& registering) {
    return FollowThenShow(registering.registration_job_id(), registering.name());
  }

  // Follows a job that fills a dataset (progress on stderr), then prints the dataset;
  // a FAILED job fails with its own status code and message.
  int FollowThenShow(const std::string& job_id, const std::string& dataset) {
    v1::Job last;
    grpc::Status s = client::Watch(stub_.get(), job_id, isatty(STDERR_FILENO), std::cerr, &last);
    if (!s.ok()) return Fail(s);
    if (last.state() == v1::FAILED) {
      const int code = last.error_code() > 0 && last.error_code() <= 16 ? last.error_code() : 2;
      return Fail(grpc::Status(static_cast<grpc::StatusCode>(code), last.error()));
    }
    if (last.state() != v1::SUCCEEDED) {
      std::cerr << "updpctl: job " << last.job_id() << " ended " << client::StateName(last.state())
                << (last.progress().message().empty() ? "" : ": " + last.progress().message())
                << "\n";
      return 1;
    }
    grpc::ClientContext ctx;
    v1::GetDatasetRequest req;
    req.set_name(dataset);
    v1::Dataset d;
    s = stub_->GetDataset(&ctx, req, &d);
    if (!s.ok()) return Fail(s);
    PrintDataset(d);
    return 0;
  }

  int Embed(const Args& a) {
    v1::StartEmbeddingRequest req;
    req.set_dataset(Need(a, 1, "DATASET"));
    req.set_batch_size(static_cast<int32_t>(Int(a, "batch-size", 0)));
    grpc::ClientContext ctx;
    v1::Job j;
    auto s = stub_->StartEmbedding(&ctx, req, &j);
    if (!s.ok()) return Fail(s);
    return Started(j, a.Has("wait"));
  }

  int Prompt(const Args& a) {
    std::string sub = Need(a, 1, "prompt subcommand");
    grpc::ClientContext ctx;
    if (sub == "learn") {
      v1::LearnPromptRequest req;
      req.set_dataset(Need(a, 2, "DATASET"));
      if (!a.Has("name")) Die("prompt learn needs --name");
      req.set_prompt_name(a.Get("name"));
      req.set_epochs(static_cast<int32_t>(Int(a, "epochs", 0)));
      req.set_num_clusters(static_cast<int32_t>(Int(a, "clusters", 0)));
      req.set_intended_budget(static_cast<int32_t>(Int(a, "budget", 0)));
      req.set_num_context(static_cast<int32_t>(Int(a, "context", 0)));
      req.set_batch_size(static_cast<int32_t>(Int(a, "batch-size", 0)));
      req.set_learning_rate(Real(a, "lr", 0));
      req.set_views(static_cast<int32_t>(Int(a, "views", 0)));
      req.set_seed(static_cast<uint64_t>(Int(a, "seed", 0)));
      req.set_max_train_items(Int(a, "max-items", 0));
      v1::Job j;
      auto s = stub_->LearnPrompt(&ctx, req, &j);
      if (!s.ok()) return Fail(s);
      return Started(j, a.Has("wait"));
    }
    if (sub == "list") {
      v1::ListPromptsResponse r;
      auto s = stub_->ListPrompts(&ctx, {}, &r);
      if (!s.ok()) return Fail(s);
      for (const auto& p : r.prompts()) {
        std::cout << p.name() << "  trained on " << p.trained_on_dataset()
                  << "  M=" << p.num_context() << " K=" << p.num_clusters() << "  model "
                  << p.model_identity() << "\n";
      }
      return 0;
    }
    if (sub == "export") {
      v1::ExportPromptRequest req;
      req.set_name(Need(a, 2, "prompt NAME"));
      if (!a.Has("out")) Die("prompt export needs --out FILE");
      v1::ExportPromptResponse r;
      auto s = stub_->ExportPrompt(&ctx, req, &r);
      if (!s.ok()) return Fail(s);
      std::ofstream f(a.Get("out"), std::ios::binary);
      f << r.artifact();
      if (!f) Die("--out: cannot write " + a.Get("out"), 1);
      std::cout << "wrote " << a.Get("out") << " (" << r.artifact().size() << " bytes)\n";
      return 0;
    }
    if (sub == "import") {
      v1::ImportPromptRequest req;
      req.set_name(Need(a, 2, "prompt NAME"));
      std::string file = Need(a, 3, "artifact FILE");
      std::ifstream f(file, std::ios::binary);
      if (!f) Die("cannot read " + file, 1);
      req.set_artifact(std::string(std::istreambuf_iterator<char>(f), {}));
      v1::Prompt p;
      auto s = stub_->ImportPrompt(&ctx, req, &p);
      if (!s.ok()) return Fail(s);
      std::cout << "imported " << p.name() << " (model " << p.model_identity() << ")\n";
      return 0;
    }
    Die("unknown prompt subcommand '" + sub + "'");
  }

  int Select(const Args& a) {
    v1::SelectRequest req;
    req.set_dataset(Need(a, 1, "DATASET"));
    if (!a.Has("budget")) Die("select needs --budget");
    req.set_budget(Int(a, "budget", 0));
    req.set_strategy(a.Get("strategy", a.Has("prompt") ? "updp" : "kmeans"));
    req.set_prompt(a.Get("prompt"));
    req.set_rule(a.Get("rule"));
    req.set_features(a.Get("features"));
    req.set_seed(static_cast<uint64_t>(Int(a, "seed", 0)));
    const bool strict = a.Has("strict-labeled");
    req.set_strict_labeled(strict);
    req.set_dedup(Real(a, "dedup", 0));
    req.set_only_new(a.Has("only-new"));
    if (a.Has("labeled")) {
      if (int rc = AddLabeled(a.Get("labeled"), strict, &req); rc != 0) return rc;
    }
    grpc::ClientContext ctx;
    v1::Job j;
    auto s = stub_->Select(&ctx, req, &j);
    if (!s.ok()) return Fail(s);
    WarnUnknownLabeled(j);
    const bool out = a.Has("out");
    const bool to_stdout = a.Get("out") == "-";
    const client::SelectionFormat format = OutputFormat(a);
    v1::Job done;
    // With --out -, stdout carries the picks and nothing else.
    if (int rc = Started(j, out || a.Has("wait"), &done, to_stdout ? std::cerr : std::cout);
        rc != 0) {
      return rc;
    }
    if (out) return WritePicks(j.job_id(), a.Get("out"), format, a);
    return 0;
  }

  // Every page of the dataset's items (ListItems), in index order, to `page`.
  grpc::Status ForEachItemPage(const std::string& dataset,
                               const std::function<void(const v1::ListItemsResponse&)>& page) {
    v1::ListItemsRequest req;
    req.set_dataset(dataset);
    req.set_page_size(10000);
    do {
      grpc::ClientContext ctx;
      v1::ListItemsResponse r;
      if (auto s = stub_->ListItems(&ctx, req, &r); !s.ok()) return s;
      page(r);
      req.set_page_token(r.next_page_token());
    } while (!req.page_token().empty());
    return grpc::Status::OK;
  }

  // --labeled FILE (labeled_list.h): ids as they are; paths mapped to their items
  // through ListItems (a path that is no item is reported like an unknown id).
  int AddLabeled(const std::string& file, bool strict, v1::SelectRequest* req) {
    auto list = client::ReadLabeledList(file);
    if (!list.ok()) Die(std::string(list.status().message()), 1);
    for (auto& id : list->ids) req->add_labeled_ids(id);
    if (list->paths.empty()) return 0;
    std::map<std::string, std::string> id_of_path;
    auto s = ForEachItemPage(req->dataset(), [&](const v1::ListItemsResponse& r) {
      for (const auto& it : r.items()) id_of_path[it.path()] = it.item_id();
    });
    if (!s.ok()) return Fail(s);
    int64_t unknown = 0;
    for (const auto& p : list->paths) {
      auto it = id_of_path.find(p);
      if (it != id_of_path.end()) {
        req->add_labeled_ids(it->second);
        continue;
      }
      if (strict) Die("--labeled: " + p + " is not an image of '" + req->dataset() + "'", 1);
      if (++unknown <= 3)
        std::cerr << "updpctl: warning: --labeled: " << p << " is not an image of '"
                  << req->dataset() << "'; ignored\n";
    }
    if (unknown > 3) {
      std::cerr << "updpctl: warning: --labeled: " << unknown << " paths in all are not images of '"
                << req->dataset() << "'; ignored\n";
    }
    return 0;
  }

  // The server ignored (and counted) labeled ids that are not items: say so.
  static void WarnUnknownLabeled(const v1::Job& j) {
    const auto params = nlohmann::json::parse(j.parameters_json(), nullptr, false);
    if (params.is_discarded() || params.value("labeled_unknown", 0) == 0) return;
    std::string first;
    for (const auto& id : params.value("labeled_unknown_first", nlohmann::json::array())) {
      first += (first.empty() ? "" : ", ") + id.get<std::string>();
    }
    std::cerr << "updpctl: warning: " << params["labeled_unknown"].get<int64_t>()
              << " labeled id(s) are not items of '" << j.dataset()
              << "' and were ignored (first: " << first
              << "); --strict-labeled makes this an error\n";
  }

  // --format, else by --out's extension (CSV for stdout).
  static client::SelectionFormat OutputFormat(const Args& a) {
    client::SelectionFormat f = client::SelectionFormatForPath(a.Get("out", "-"));
    if (a.Has("format") && !client::ParseSelectionFormat(a.Get("format"), &f)) {
      Die("--format: '" + a.Get("format") +
          "' is not csv, json, paths, labelstudio, cvat or fiftyone");
    }
    return f;
  }

  int WritePicks(const std::string& job_id, const std::string& out, client::SelectionFormat format,
                 const Args& a) {
    client::ExportOptions eo;
    eo.prefix = a.Get("prefix");
    eo.relative_to = a.Get("relative-to");
    eo.data_key = a.Get("data-key", "image");
    int64_t n = 0;
    auto w = client::WriteSelection(stub_.get(), job_id, out, format, eo, &n);
    if (!w.ok()) return Fail(w);
    if (out != "-") std::cerr << "updpctl: wrote " << n << " picks to " << out << "\n";
    return 0;
  }

  // selection get JOB [--format F] [--out FILE|-]: any finished selection, again.
  int Selection(const Args& a) {
    const std::string sub = Need(a, 1, "selection subcommand");
    if (sub != "get") Die("unknown selection subcommand '" + sub + "'");
    const std::string job = Need(a, 2, "JOB id");
    return WritePicks(job, a.Get("out", "-"), OutputFormat(a), a);
  }

  // report JOB --out FILE.html|-: the selection's visual report; progress on stderr.
  int Report(const Args& a) {
    client::ReportRequest r;
    r.job_id = Need(a, 1, "JOB id");
    if (!a.Has("out")) Die("report needs --out FILE.html (or --out - for stdout)");
    const std::string out = a.Get("out");
    r.thumbnail_size = static_cast<int>(Int(a, "thumbnail-size", 0));
    r.max_thumbnails = static_cast<int>(Int(a, "max-thumbnails", 0));
    client::ReportData data;
    const bool tty = isatty(STDERR_FILENO);
    auto s = client::FetchReport(stub_.get(), r, &data, [&](int64_t done, int64_t total) {
      if (tty) std::cerr << "\rupdpctl: fetched " << done << "/" << total << " picks" << std::flush;
    });
    if (tty) std::cerr << "\n";
    if (!s.ok()) return Fail(s);
    if (auto w = client::WriteText(out, client::ReportHtml(data), "the report"); !w.ok()) {
      return Fail(w);
    }
    const client::ThumbnailCounts n = client::CountThumbnails(data);
    std::cerr << "updpctl: report of " << data.picks.size() << " picks in "
              << data.summary.clusters_size() << " clusters, " << n.made << " thumbnails ("
              << n.failed << " could not be decoded)" << (out == "-" ? "" : " written to " + out)
              << "\n";
    return 0;
  }

  int Jobs(const Args& a) {
    std::string sub = Need(a, 1, "jobs subcommand");
    grpc::ClientContext ctx;
    if (sub == "list") {
      v1::ListJobsRequest req;
      req.set_dataset(a.Get("dataset"));
      if (a.Has("state")) {
        v1::JobState st;
        if (!v1::JobState_Parse(absl::AsciiStrToUpper(a.Get("state")), &st)) {
          Die("--state: unknown state " + a.Get("state"));
        }
        req.set_state(st);
      }
      v1::ListJobsResponse r;
      auto s = stub_->ListJobs(&ctx, req, &r);
      if (!s.ok()) return Fail(s);
      for (const auto& j : r.jobs()) std::cout << client::JobLine(j) << "\n";
      return 0;
    }
    std::string id = Need(a, 2, "job ID");
    if (sub == "show") {
      v1::GetJobRequest req;
      req.set_job_id(id);
      v1::Job j;
      auto s = stub_->GetJob(&ctx, req, &j);
      if (!s.ok()) return Fail(s);
      std::cout << client::JobLine(j) << "\n  parameters: " << j.parameters_json() << "\n";
      if (!j.result_json().empty()) std::cout << "  result: " << j.result_json() << "\n";
      return 0;
    }
    if (sub == "watch") {
      v1::Job last;
      auto s = client::Watch(stub_.get(), id, isatty(STDOUT_FILENO), std::cout, &last);
      if (!s.ok()) return Fail(s);
      return last.state() == v1::SUCCEEDED ? 0 : 1;
    }
    if (sub == "cancel") {
      v1::CancelJobRequest req;
      req.set_job_id(id);
      v1::Job j;
      auto s = stub_->CancelJob(&ctx, req, &j);
      if (!s.ok()) return Fail(s);
      std::cout << client::JobLine(j) << "\n";
      return 0;
    }
    if (sub == "resume") {
      v1::ResumeJobRequest req;
      req.set_job_id(id);
      v1::Job j;
      auto s = stub_->ResumeJob(&ctx, req, &j);
      if (!s.ok()) return Fail(s);
      return Started(j, a.Has("wait"));
    }
    Die("unknown jobs subcommand '" + sub + "'");
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Updp::Stub> stub_;
};

}  // namespace

int main(int argc, char** argv) {
  // Line-buffered even into a pipe: `updpctl jobs watch ID | ...` sees each line as
  // it comes, not a block at the end.
  setvbuf(stdout, nullptr, _IOLBF, 0);
  Args a = Parse(argc, argv);
  if (a.Has("help") || a.pos.empty()) {
    std::cout << Usage();
    return a.pos.empty() && !a.Has("help") ? 2 : 0;
  }
  std::string addr = a.Get("addr");
  if (addr.empty()) {
    const char* env = std::getenv("UPDP_ADDR");
    addr = env && *env ? env : "localhost:50051";
  }
  // Each TLS flag wins over its environment variable.
  auto flag_or_env = [&a](const char* flag, const char* env) {
    if (a.Has(flag)) return a.Get(flag);
    const char* v = std::getenv(env);
    return std::string(v ? v : "");
  };
  client::TlsClientFiles tls;
  tls.tls = flag_or_env("tls", "UPDP_TLS") == "1";
  tls.ca = flag_or_env("tls_ca", "UPDP_TLS_CA");
  tls.cert = flag_or_env("tls_cert", "UPDP_TLS_CERT");
  tls.key = flag_or_env("tls_key", "UPDP_TLS_KEY");
  auto creds = client::ChannelCredentialsFrom(tls);
  if (!creds.ok()) Die(std::string(creds.status().message()));
  auto token = client::ResolveToken(a.Get("token"), a.Get("token_file"));
  if (!token.ok()) Die(std::string(token.status().message()));
  Cli cli(client::MakeChannel(addr, *creds, *token));
  const std::string& cmd = a.pos[0];
  if (cmd == "dataset") return cli.Dataset(a);
  if (cmd == "embed") return cli.Embed(a);
  if (cmd == "prompt") return cli.Prompt(a);
  if (cmd == "select") return cli.Select(a);
  if (cmd == "selection") return cli.Selection(a);
  if (cmd == "report") return cli.Report(a);
  if (cmd == "jobs") return cli.Jobs(a);
  if (cmd == "health") return cli.Health(a);
  Die("unknown command '" + cmd + "'\n" + Usage());
}
