#include "server/core/store.h"

#include <sqlite3.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace updp::core {
namespace {

// Schema migrations, applied in order; index i upgrades version i to i+1.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE datasets (
  name TEXT PRIMARY KEY,
  source_kind INTEGER NOT NULL,
  source_path TEXT NOT NULL,
  num_items INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE items (
  dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  item_id TEXT NOT NULL,
  path TEXT NOT NULL,
  PRIMARY KEY (dataset, idx),
  UNIQUE (dataset, item_id)
);
CREATE TABLE failed_items (
  dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
  item_id TEXT NOT NULL,
  path TEXT NOT NULL,
  error TEXT NOT NULL,
  PRIMARY KEY (dataset, item_id)
);
CREATE TABLE feature_chunks (
  dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
  source TEXT NOT NULL,
  chunk INTEGER NOT NULL,
  count INTEGER NOT NULL,
  path TEXT NOT NULL,
  PRIMARY KEY (dataset, source, chunk)
);
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT UNIQUE NOT NULL,
  kind INTEGER NOT NULL,
  state INTEGER NOT NULL,
  dataset TEXT NOT NULL,
  params_json TEXT NOT NULL,
  stage TEXT NOT NULL DEFAULT '',
  done INTEGER NOT NULL DEFAULT 0,
  total INTEGER NOT NULL DEFAULT 0,
  rate REAL NOT NULL DEFAULT 0,
  message TEXT NOT NULL DEFAULT '',
  loss REAL,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL DEFAULT 0,
  finished_ms INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  result_json TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_dataset ON jobs(dataset);
CREATE TABLE selections (
  job_id TEXT NOT NULL,
  rank INTEGER NOT NULL,
  item_idx INTEGER NOT NULL,
  item_id TEXT NOT NULL,
  path TEXT NOT NULL,
  cluster INTEGER NOT NULL,
  score REAL NOT NULL,
  PRIMARY KEY (job_id, rank)
);
CREATE TABLE prompts (
  name TEXT PRIMARY KEY,
  dataset TEXT NOT NULL,
  model_identity TEXT NOT NULL,
  num_context INTEGER NOT NULL,
  num_clusters INTEGER NOT NULL,
  config_json TEXT NOT NULL,
  path TEXT NOT NULL,
  created_ms INTEGER NOT NULL
);
)sql",
};

// RAII prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  int Step() { return sqlite3_step(s_); }
  void Reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  int64_t Int(int c) { return sqlite3_column_int64(s_, c); }
  double Real(int c) { return sqlite3_column_double(s_, c); }
  bool IsNull(int c) { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::string Text(int c) {
    const unsigned char* t = sqlite3_column_text(s_, c);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(s_, c)) : "";
  }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

absl::Status SqlError(sqlite3* db, const std::string& what) {
  return absl::InternalError(absl::StrCat("sqlite: ", what, ": ", sqlite3_errmsg(db)));
}

constexpr const char* kJobCols =
    "id, kind, state, dataset, params_json, stage, done, total, rate, message, loss, created_ms, "
    "started_ms, finished_ms, error, result_json";

JobInfo ReadJob(Stmt& s) {
  JobInfo j;
  j.id = s.Text(0);
  j.kind = static_cast<JobKind>(s.Int(1));
  j.state = static_cast<JobState>(s.Int(2));
  j.dataset = s.Text(3);
  j.params_json = s.Text(4);
  j.progress.stage = s.Text(5);
  j.progress.done = s.Int(6);
  j.progress.total = s.Int(7);
  j.progress.rate = s.Real(8);
  j.progress.message = s.Text(9);
  if (!s.IsNull(10)) j.progress.loss = s.Real(10);
  j.created_ms = s.Int(11);
  j.started_ms = s.Int(12);
  j.finished_ms = s.Int(13);
  j.error = s.Text(14);
  j.result_json = s.Text(15);
  return j;
}

constexpr const char* kPromptCols =
    "name, dataset, model_identity, num_context, num_clusters, config_json, path, created_ms";

PromptInfo ReadPrompt(Stmt& s) {
  return PromptInfo{s.Text(0), s.Text(1), s.Text(2), static_cast<int>(s.Int(3)),
                    static_cast<int>(s.Int(4)), s.Text(5), s.Text(6), s.Int(7)};
}

}  // namespace

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued: return "QUEUED";
    case JobState::kRunning: return "RUNNING";
    case JobState::kSucceeded: return "SUCCEEDED";
    case JobState::kFailed: return "FAILED";
    case JobState::kCancelled: return "CANCELLED";
    case JobState::kInterrupted: return "INTERRUPTED";
    default: return "UNSPECIFIED";
  }
}

const char* JobKindName(JobKind k) {
  switch (k) {
    case JobKind::kEmbed: return "EMBED";
    case JobKind::kLearnPrompt: return "LEARN_PROMPT";
    case JobKind::kSelect: return "SELECT";
    default: return "UNSPECIFIED";
  }
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: cannot create '", data_dir, "': ", ec.message()));
  }
  std::unique_ptr<Store> s(new Store());
  s->data_dir_ = data_dir;
  std::string path = data_dir + "/updp.db";
  if (sqlite3_open_v2(path.c_str(), &s->db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: cannot open database '", path, "'"));
  }
  sqlite3_busy_timeout(s->db_, 5000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=NORMAL;",
                             "PRAGMA foreign_keys=ON;"}) {
    if (auto st = s->Exec(pragma); !st.ok()) return st;
  }
  if (auto st = s->Migrate(); !st.ok()) return st;
  return s;
}

Store::~Store() {
  if (db_) sqlite3_close(db_);
}

absl::Status Store::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("sqlite: ", msg));
  }
  return absl::OkStatus();
}

int Store::schema_version() {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, "PRAGMA user_version;");
  return s.Step() == SQLITE_ROW ? static_cast<int>(s.Int(0)) : -1;
}

absl::Status Store::Migrate() {
  int version;
  {
    Stmt s(db_, "PRAGMA user_version;");
    version = s.Step() == SQLITE_ROW ? static_cast<int>(s.Int(0)) : 0;
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: database schema version ", version,
                     " is newer than this server's ", kSchemaVersion));
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    if (auto s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
    auto st = Exec(kMigrations[v]);
    if (st.ok()) st = Exec(absl::StrCat("PRAGMA user_version=", v + 1, ";"));
    if (!st.ok()) {
      Exec("ROLLBACK;").IgnoreError();
      return st;
    }
    if (auto s = Exec("COMMIT;"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Store::CreateDataset(const DatasetInfo& d, const std::vector<ItemRow>& items,
                                  const std::vector<FailedItemRow>& failed) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
  auto fail = [&](absl::Status s) {
    Exec("ROLLBACK;").IgnoreError();
    return s;
  };
  {
    Stmt q(db_, "SELECT 1 FROM datasets WHERE name=?;");
    q.Bind(1, d.name);
    if (q.Step() == SQLITE_ROW) {
      return fail(absl::AlreadyExistsError(absl::StrCat("name: dataset '", d.name, "' already exists")));
    }
  }
  Stmt ins(db_, "INSERT INTO datasets(name, source_kind, source_path, num_items, created_ms) "
                "VALUES(?,?,?,?,?);");
  ins.Bind(1, d.name).Bind(2, static_cast<int64_t>(d.source_kind)).Bind(3, d.source_path)
      .Bind(4, static_cast<int64_t>(items.size())).Bind(5, d.created_ms);
  if (ins.Step() != SQLITE_DONE) return fail(SqlError(db_, "insert dataset"));
  Stmt it(db_, "INSERT INTO items(dataset, idx, item_id, path) VALUES(?,?,?,?);");
  for (const auto& r : items) {
    it.Bind(1, d.name).Bind(2, r.idx).Bind(3, r.item_id).Bind(4, r.path);
    if (it.Step() != SQLITE_DONE) return fail(SqlError(db_, "insert item " + r.item_id));
    it.Reset();
  }
  Stmt fi(db_, "INSERT OR REPLACE INTO failed_items(dataset, item_id, path, error) VALUES(?,?,?,?);");
  for (const auto& r : failed) {
    fi.Bind(1, d.name).Bind(2, r.item_id).Bind(3, r.path).Bind(4, r.error);
    if (fi.Step() != SQLITE_DONE) return fail(SqlError(db_, "insert failed item"));
    fi.Reset();
  }
  return Exec("COMMIT;");
}

absl::StatusOr<DatasetInfo> Store::GetDataset(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, "SELECT name, source_kind, source_path, num_items, created_ms FROM datasets WHERE name=?;");
  s.Bind(1, name);
  if (s.Step() != SQLITE_ROW) {
    return absl::NotFoundError(absl::StrCat("dataset: '", name, "' not found"));
  }
  DatasetInfo d;
  d.name = s.Text(0);
  d.source_kind = static_cast<SourceKind>(s.Int(1));
  d.source_path = s.Text(2);
  d.num_items = s.Int(3);
  d.created_ms = s.Int(4);
  Stmt c(db_, "SELECT COUNT(*) FROM failed_items WHERE dataset=?;");
  c.Bind(1, name);
  if (c.Step() == SQLITE_ROW) d.num_failed = c.Int(0);
  Stmt f(db_, "SELECT item_id, path, error FROM failed_items WHERE dataset=? ORDER BY item_id LIMIT 100;");
  f.Bind(1, name);
  while (f.Step() == SQLITE_ROW) d.failed_items.push_back({f.Text(0), f.Text(1), f.Text(2)});
  Stmt src(db_, "SELECT DISTINCT source FROM feature_chunks WHERE dataset=? ORDER BY source;");
  src.Bind(1, name);
  while (src.Step() == SQLITE_ROW) d.feature_sources.push_back(src.Text(0));
  return d;
}

std::vector<DatasetInfo> Store::ListDatasets() {
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT name FROM datasets ORDER BY name;");
    while (s.Step() == SQLITE_ROW) names.push_back(s.Text(0));
  }
  std::vector<DatasetInfo> out;
  for (const auto& n : names) {
    auto d = GetDataset(n);
    if (d.ok()) out.push_back(*d);
  }
  return out;
}

absl::Status Store::DeleteDataset(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
  Stmt sel(db_, "DELETE FROM selections WHERE job_id IN (SELECT id FROM jobs WHERE dataset=?);");
  sel.Bind(1, name);
  sel.Step();
  Stmt d(db_, "DELETE FROM datasets WHERE name=?;");
  d.Bind(1, name);
  if (d.Step() != SQLITE_DONE) {
    Exec("ROLLBACK;").IgnoreError();
    return SqlError(db_, "delete dataset");
  }
  if (sqlite3_changes(db_) == 0) {
    Exec("ROLLBACK;").IgnoreError();
    return absl::NotFoundError(absl::StrCat("dataset: '", name, "' not found"));
  }
  return Exec("COMMIT;");
}

std::vector<ItemRow> Store::Items(const std::string& dataset) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<ItemRow> out;
  Stmt s(db_, "SELECT idx, item_id, path FROM items WHERE dataset=? ORDER BY idx;");
  s.Bind(1, dataset);
  while (s.Step() == SQLITE_ROW) out.push_back({s.Int(0), s.Text(1), s.Text(2)});
  return out;
}

absl::Status Store::AddFailedItems(const std::string& dataset,
                                   const std::vector<FailedItemRow>& rows) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
  Stmt fi(db_, "INSERT OR REPLACE INTO failed_items(dataset, item_id, path, error) VALUES(?,?,?,?);");
  for (const auto& r : rows) {
    fi.Bind(1, dataset).Bind(2, r.item_id).Bind(3, r.path).Bind(4, r.error);
    if (fi.Step() != SQLITE_DONE) {
      Exec("ROLLBACK;").IgnoreError();
      return SqlError(db_, "insert failed item");
    }
    fi.Reset();
  }
  return Exec("COMMIT;");
}

absl::Status Store::AddFeatureChunk(const std::string& dataset, const std::string& source,
                                    const FeatureChunk& c) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, "INSERT OR REPLACE INTO feature_chunks(dataset, source, chunk, count, path) VALUES(?,?,?,?,?);");
  s.Bind(1, dataset).Bind(2, source).Bind(3, c.chunk).Bind(4, c.count).Bind(5, c.path);
  if (s.Step() != SQLITE_DONE) return SqlError(db_, "insert feature chunk");
  return absl::OkStatus();
}

std::vector<FeatureChunk> Store::FeatureChunks(const std::string& dataset,
                                               const std::string& source) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<FeatureChunk> out;
  Stmt s(db_, "SELECT chunk, count, path FROM feature_chunks WHERE dataset=? AND source=? ORDER BY chunk;");
  s.Bind(1, dataset).Bind(2, source);
  while (s.Step() == SQLITE_ROW) out.push_back({s.Int(0), s.Int(1), s.Text(2)});
  return out;
}

absl::Status Store::DeleteFeatures(const std::string& dataset, const std::string& source) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, "DELETE FROM feature_chunks WHERE dataset=? AND source=?;");
  s.Bind(1, dataset).Bind(2, source);
  if (s.Step() != SQLITE_DONE) return SqlError(db_, "delete features");
  return absl::OkStatus();
}

absl::StatusOr<JobInfo> Store::CreateJob(JobKind kind, const std::string& dataset,
                                         const std::string& params_json) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
  int64_t seq = 1;
  {
    Stmt q(db_, "SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs;");
    if (q.Step() == SQLITE_ROW) seq = q.Int(0);
  }
  JobInfo j;
  j.id = absl::StrCat("job-", seq);
  j.kind = kind;
  j.state = JobState::kQueued;
  j.dataset = dataset;
  j.params_json = params_json;
  j.created_ms = NowMs();
  Stmt s(db_, "INSERT INTO jobs(seq, id, kind, state, dataset, params_json, created_ms) VALUES(?,?,?,?,?,?,?);");
  s.Bind(1, seq).Bind(2, j.id).Bind(3, static_cast<int64_t>(kind))
      .Bind(4, static_cast<int64_t>(j.state)).Bind(5, dataset).Bind(6, params_json)
      .Bind(7, j.created_ms);
  if (s.Step() != SQLITE_DONE) {
    Exec("ROLLBACK;").IgnoreError();
    return SqlError(db_, "insert job");
  }
  if (auto st = Exec("COMMIT;"); !st.ok()) return st;
  return j;
}

absl::Status Store::UpdateJob(const JobInfo& j) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_,
         "UPDATE jobs SET state=?, stage=?, done=?, total=?, rate=?, message=?, loss=?, "
         "started_ms=?, finished_ms=?, error=?, result_json=? WHERE id=?;");
  s.Bind(1, static_cast<int64_t>(j.state)).Bind(2, j.progress.stage).Bind(3, j.progress.done)
      .Bind(4, j.progress.total).Bind(5, j.progress.rate).Bind(6, j.progress.message);
  if (j.progress.loss.has_value()) {
    s.Bind(7, *j.progress.loss);
  } else {
    s.BindNull(7);
  }
  s.Bind(8, j.started_ms).Bind(9, j.finished_ms).Bind(10, j.error).Bind(11, j.result_json)
      .Bind(12, j.id);
  if (s.Step() != SQLITE_DONE) return SqlError(db_, "update job");
  return absl::OkStatus();
}

absl::StatusOr<JobInfo> Store::GetJob(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, absl::StrCat("SELECT ", kJobCols, " FROM jobs WHERE id=?;").c_str());
  s.Bind(1, id);
  if (s.Step() != SQLITE_ROW) return absl::NotFoundError(absl::StrCat("job_id: '", id, "' not found"));
  return ReadJob(s);
}

std::vector<JobInfo> Store::ListJobs(const std::string& dataset, JobState state, int limit) {
  std::lock_guard<std::mutex> l(mu_);
  std::string sql = absl::StrCat("SELECT ", kJobCols,
                                 " FROM jobs WHERE (?1 = '' OR dataset = ?1) AND (?2 = 0 OR state = ?2) "
                                 "ORDER BY seq DESC LIMIT ?3;");
  Stmt s(db_, sql.c_str());
  s.Bind(1, dataset).Bind(2, static_cast<int64_t>(state)).Bind(3, static_cast<int64_t>(limit));
  std::vector<JobInfo> out;
  while (s.Step() == SQLITE_ROW) out.push_back(ReadJob(s));
  return out;
}

int Store::MarkRunningInterrupted() {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, "UPDATE jobs SET state=?, message='server stopped while the job ran; ResumeJob continues it' WHERE state=?;");
  s.Bind(1, static_cast<int64_t>(JobState::kInterrupted))
      .Bind(2, static_cast<int64_t>(JobState::kRunning));
  s.Step();
  return sqlite3_changes(db_);
}

absl::Status Store::SaveSelection(const std::string& job_id, const std::vector<SelectionRow>& rows) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
  Stmt del(db_, "DELETE FROM selections WHERE job_id=?;");
  del.Bind(1, job_id);
  del.Step();
  Stmt ins(db_, "INSERT INTO selections(job_id, rank, item_idx, item_id, path, cluster, score) VALUES(?,?,?,?,?,?,?);");
  for (const auto& r : rows) {
    ins.Bind(1, job_id).Bind(2, r.rank).Bind(3, r.item_idx).Bind(4, r.item_id).Bind(5, r.path)
        .Bind(6, r.cluster).Bind(7, r.score);
    if (ins.Step() != SQLITE_DONE) {
      Exec("ROLLBACK;").IgnoreError();
      return SqlError(db_, "insert selection");
    }
    ins.Reset();
  }
  return Exec("COMMIT;");
}

std::vector<SelectionRow> Store::GetSelection(const std::string& job_id, int64_t offset,
                                              int64_t limit) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, "SELECT rank, item_idx, item_id, path, cluster, score FROM selections WHERE job_id=? "
              "ORDER BY rank LIMIT ? OFFSET ?;");
  s.Bind(1, job_id).Bind(2, limit).Bind(3, offset);
  std::vector<SelectionRow> out;
  while (s.Step() == SQLITE_ROW) {
    out.push_back({s.Int(0), s.Int(1), s.Text(2), s.Text(3), s.Int(4), s.Real(5)});
  }
  return out;
}

int64_t Store::CountSelection(const std::string& job_id) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, "SELECT COUNT(*) FROM selections WHERE job_id=?;");
  s.Bind(1, job_id);
  return s.Step() == SQLITE_ROW ? s.Int(0) : 0;
}

absl::Status Store::CreatePrompt(const PromptInfo& p) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt q(db_, "SELECT 1 FROM prompts WHERE name=?;");
  q.Bind(1, p.name);
  if (q.Step() == SQLITE_ROW) {
    return absl::AlreadyExistsError(absl::StrCat("prompt_name: prompt '", p.name, "' already exists"));
  }
  Stmt s(db_, "INSERT INTO prompts(name, dataset, model_identity, num_context, num_clusters, config_json, path, created_ms) VALUES(?,?,?,?,?,?,?,?);");
  s.Bind(1, p.name).Bind(2, p.dataset).Bind(3, p.model_identity)
      .Bind(4, static_cast<int64_t>(p.num_context)).Bind(5, static_cast<int64_t>(p.num_clusters))
      .Bind(6, p.config_json).Bind(7, p.path).Bind(8, p.created_ms);
  if (s.Step() != SQLITE_DONE) return SqlError(db_, "insert prompt");
  return absl::OkStatus();
}

absl::StatusOr<PromptInfo> Store::GetPrompt(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, absl::StrCat("SELECT ", kPromptCols, " FROM prompts WHERE name=?;").c_str());
  s.Bind(1, name);
  if (s.Step() != SQLITE_ROW) return absl::NotFoundError(absl::StrCat("prompt: '", name, "' not found"));
  return ReadPrompt(s);
}

std::vector<PromptInfo> Store::ListPrompts() {
  std::lock_guard<std::mutex> l(mu_);
  Stmt s(db_, absl::StrCat("SELECT ", kPromptCols, " FROM prompts ORDER BY name;").c_str());
  std::vector<PromptInfo> out;
  while (s.Step() == SQLITE_ROW) out.push_back(ReadPrompt(s));
  return out;
}

}  // namespace updp::core
