#include "server/core/store.h"

#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "server/util/error_text.h"

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
    // 2: staged dataset registration/deletion, prompt-name reservations, state index.
    R"sql(
ALTER TABLE datasets ADD COLUMN state INTEGER NOT NULL DEFAULT 1;
ALTER TABLE datasets ADD COLUMN chunk_size INTEGER NOT NULL DEFAULT 1024;
ALTER TABLE prompts ADD COLUMN state INTEGER NOT NULL DEFAULT 1;
ALTER TABLE prompts ADD COLUMN job_id TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_state ON jobs(state);
)sql",
    // 3: registration as a job (the dataset row names its REGISTER job), and the
    // status code of a failed job's error.
    R"sql(
ALTER TABLE datasets ADD COLUMN registration_job TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN error_code INTEGER NOT NULL DEFAULT 0;
)sql",
    // 4: growing datasets: items carry the refresh that added them and a missing flag;
    // a feature chunk records where the items it accounts for end (so that a chunk
    // a refresh added items to is known to be short of them).
    R"sql(
ALTER TABLE items ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE items ADD COLUMN missing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE datasets ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE datasets ADD COLUMN num_missing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE feature_chunks ADD COLUMN end_idx INTEGER NOT NULL DEFAULT -1;
UPDATE feature_chunks SET end_idx = (SELECT MIN((feature_chunks.chunk + 1) * d.chunk_size,
  d.num_items) FROM datasets d WHERE d.name = feature_chunks.dataset);
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == Store::kSchemaVersion);

constexpr int kPromptLearning = 0;
constexpr int kPromptReady = 1;
constexpr int kMaxReaders = 4;
constexpr size_t kInsertBatch = 5000;  // rows per transaction in AddItems
// Values per `IN (...)` lookup: one prepared statement with this many bound parameters
// answers a batch (SQLite's default limit is 999 parameters before 3.32).
constexpr size_t kLookupBatch = 500;

// "?2, ?3, ..., ?(n+1)": the parameters after the dataset's ?1.
std::string Placeholders(size_t n) {
  std::string out;
  for (size_t k = 0; k < n; ++k) absl::StrAppend(&out, k ? ", ?" : "?", k + 2);
  return out;
}

absl::Status SqlError(sqlite3* db, const std::string& what) {
  return absl::InternalError(absl::StrCat("sqlite: ", what, ": ", sqlite3_errmsg(db)));
}

// RAII prepared statement. A failed prepare is reported by the first Step (as
// SQLITE_ERROR), so that every caller's Step check also covers it.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &s_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& Bind(int i, const std::string& v) {
    if (s_) sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    if (s_) sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, int v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, double v) {
    if (s_) sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& BindNull(int i) {
    if (s_) sqlite3_bind_null(s_, i);
    return *this;
  }
  int Step() { return s_ && rc_ == SQLITE_OK ? sqlite3_step(s_) : SQLITE_ERROR; }
  // Steps a statement that returns no rows.
  absl::Status Run(const std::string& what) {
    return Step() == SQLITE_DONE ? absl::OkStatus() : SqlError(db_, what);
  }
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
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

// The text of the first column of every row of `s`.
absl::StatusOr<std::vector<std::string>> FirstColumn(sqlite3* db, Stmt& s, const char* what) {
  std::vector<std::string> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(s.Text(0));
  if (rc != SQLITE_DONE) return SqlError(db, what);
  return out;
}

constexpr const char* kItemCols = "idx, item_id, path, generation, missing";

ItemRow ReadItem(Stmt& s) {
  return ItemRow{s.Int(0), s.Text(1), s.Text(2), s.Int(3), s.Int(4) != 0};
}

absl::Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("sqlite: ", msg));
  }
  return absl::OkStatus();
}

constexpr const char* kJobCols =
    "id, kind, state, dataset, params_json, stage, done, total, rate, message, loss, created_ms, "
    "started_ms, finished_ms, error, result_json, error_code";

absl::StatusOr<JobInfo> ReadJob(Stmt& s) {
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
  j.error_code = static_cast<int>(s.Int(16));
  auto params = ParamsFromJson(j.kind, j.params_json);
  if (!params.ok()) {
    return absl::DataLossError(absl::StrCat("job ", j.id, ": ", params.status().message()));
  }
  j.params = std::move(*params);
  return j;
}

constexpr const char* kPromptCols =
    "name, dataset, model_identity, num_context, num_clusters, config_json, path, created_ms";

PromptInfo ReadPrompt(Stmt& s) {
  return PromptInfo{
      s.Text(0), s.Text(1), s.Text(2), static_cast<int>(s.Int(3)), static_cast<int>(s.Int(4)),
      s.Text(5), s.Text(6), s.Int(7)};
}

absl::StatusOr<DatasetInfo> ReadDataset(sqlite3* db, const std::string& name) {
  Stmt s(db,
         "SELECT name, source_kind, source_path, num_items, created_ms, chunk_size, "
         "registration_job, generation, num_missing FROM datasets WHERE name=? AND state=1;");
  s.Bind(1, name);
  int rc = s.Step();
  if (rc == SQLITE_DONE)
    return absl::NotFoundError(absl::StrCat("dataset: ", Quote(name), " not found"));
  if (rc != SQLITE_ROW) return SqlError(db, "read dataset");
  DatasetInfo d;
  d.name = s.Text(0);
  d.source_kind = static_cast<SourceKind>(s.Int(1));
  d.source_path = s.Text(2);
  d.num_items = s.Int(3);
  d.created_ms = s.Int(4);
  d.chunk_size = s.Int(5);
  d.registration_job_id = s.Text(6);
  d.generation = s.Int(7);
  d.num_missing = s.Int(8);
  Stmt c(db, "SELECT COUNT(*) FROM failed_items WHERE dataset=?;");
  c.Bind(1, name);
  if (c.Step() != SQLITE_ROW) return SqlError(db, "count failed items");
  d.num_failed = c.Int(0);
  Stmt f(
      db,
      "SELECT item_id, path, error FROM failed_items WHERE dataset=? ORDER BY item_id LIMIT 100;");
  f.Bind(1, name);
  while ((rc = f.Step()) == SQLITE_ROW) d.failed_items.push_back({f.Text(0), f.Text(1), f.Text(2)});
  if (rc != SQLITE_DONE) return SqlError(db, "read failed items");
  Stmt src(db, "SELECT DISTINCT source FROM feature_chunks WHERE dataset=? ORDER BY source;");
  src.Bind(1, name);
  while ((rc = src.Step()) == SQLITE_ROW) d.feature_sources.push_back(src.Text(0));
  if (rc != SQLITE_DONE) return SqlError(db, "read feature sources");
  return d;
}

// Inserts the REGISTERING row of `d` (registered by `job_id`, if any); ALREADY_EXISTS
// when the name is taken, whatever its state. Inside the caller's transaction.
absl::Status ClaimDatasetName(sqlite3* db, const DatasetInfo& d, const std::string& job_id) {
  Stmt q(db, "SELECT state FROM datasets WHERE name=?;");
  q.Bind(1, d.name);
  int rc = q.Step();
  if (rc == SQLITE_ROW) {
    const auto state = static_cast<DatasetState>(q.Int(0));
    return absl::AlreadyExistsError(absl::StrCat("name: dataset ", Quote(d.name),
                                                 state == DatasetState::kReady ? " already exists"
                                                 : state == DatasetState::kRegistering
                                                     ? " is being registered by another call"
                                                     : " is being deleted"));
  }
  if (rc != SQLITE_DONE) return SqlError(db, "look up dataset");
  Stmt ins(db,
           "INSERT INTO datasets(name, source_kind, source_path, num_items, created_ms, state, "
           "chunk_size, registration_job) VALUES(?,?,?,0,?,0,?,?);");
  ins.Bind(1, d.name)
      .Bind(2, static_cast<int64_t>(d.source_kind))
      .Bind(3, d.source_path)
      .Bind(4, d.created_ms)
      .Bind(5, d.chunk_size)
      .Bind(6, job_id);
  return ins.Run("insert dataset");
}

}  // namespace

// A reader connection for the lifetime of the lease, inside one read transaction
// (a consistent snapshot across the statements of one call).
class Store::ReadLease {
 public:
  explicit ReadLease(Store* s) : s_(s) {
    auto db = s->AcquireReader();
    if (!db.ok()) {
      status_ = db.status();
      return;
    }
    db_ = *db;
    status_ = Exec(db_, "BEGIN;");
  }
  ~ReadLease() {
    if (!db_) return;
    Exec(db_, "COMMIT;").IgnoreError();
    s_->ReleaseReader(db_);
  }
  const absl::Status& status() const { return status_; }
  sqlite3* db() const { return db_; }

 private:
  Store* s_;
  sqlite3* db_ = nullptr;
  absl::Status status_;
};

// A write transaction on the writer connection; rolled back unless committed.
class Store::Tx {
 public:
  explicit Tx(Store* s) : lock_(s->write_mu_), db_(s->db_) {
    status_ = Exec(db_, "BEGIN IMMEDIATE;");
  }
  ~Tx() {
    if (status_.ok() && !done_) Exec(db_, "ROLLBACK;").IgnoreError();
  }
  const absl::Status& status() const { return status_; }
  sqlite3* db() const { return db_; }
  absl::Status Commit() {
    done_ = true;
    auto s = Exec(db_, "COMMIT;");
    if (!s.ok()) Exec(db_, "ROLLBACK;").IgnoreError();
    return s;
  }

 private:
  std::lock_guard<std::mutex> lock_;
  sqlite3* db_;
  absl::Status status_;
  bool done_ = false;
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return "QUEUED";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kSucceeded:
      return "SUCCEEDED";
    case JobState::kFailed:
      return "FAILED";
    case JobState::kCancelled:
      return "CANCELLED";
    case JobState::kInterrupted:
      return "INTERRUPTED";
    default:
      return "UNSPECIFIED";
  }
}

bool IsLegalTransition(JobState from, JobState to) {
  switch (from) {
    case JobState::kQueued:
      return to == JobState::kRunning || to == JobState::kCancelled;
    case JobState::kRunning:
      return to == JobState::kSucceeded || to == JobState::kFailed || to == JobState::kCancelled ||
             to == JobState::kInterrupted;
    case JobState::kInterrupted:
    case JobState::kCancelled:
    case JobState::kFailed:
      return to == JobState::kQueued;
    default:
      return false;
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
  const std::string path = data_dir + "/updp.db";
  if (sqlite3_open_v2(path.c_str(), &s->db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: cannot open database '", path, "': ", sqlite3_errmsg(s->db_)));
  }
  sqlite3_busy_timeout(s->db_, 5000);
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=NORMAL;", "PRAGMA foreign_keys=ON;"}) {
    if (auto st = Exec(s->db_, pragma); !st.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("data_dir: ", path, ": ", st.message()));
    }
  }
  if (auto st = s->Migrate(); !st.ok()) return st;
  return s;
}

Store::~Store() {
  for (sqlite3* r : all_readers_) sqlite3_close(r);
  if (db_) sqlite3_close(db_);
}

absl::StatusOr<sqlite3*> Store::AcquireReader() {
  std::unique_lock<std::mutex> l(pool_mu_);
  while (free_readers_.empty() && all_readers_.size() >= static_cast<size_t>(kMaxReaders)) {
    pool_cv_.wait(l);
  }
  if (!free_readers_.empty()) {
    sqlite3* db = free_readers_.back();
    free_readers_.pop_back();
    return db;
  }
  sqlite3* db = nullptr;
  const std::string path = data_dir_ + "/updp.db";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    auto s = SqlError(db, "open reader");
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 5000);
  if (auto s = Exec(db, "PRAGMA query_only=1;"); !s.ok()) {
    sqlite3_close(db);
    return s;
  }
  all_readers_.push_back(db);
  return db;
}

void Store::ReleaseReader(sqlite3* db) {
  {
    std::lock_guard<std::mutex> l(pool_mu_);
    free_readers_.push_back(db);
  }
  pool_cv_.notify_one();
}

absl::StatusOr<int> Store::schema_version() {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), "PRAGMA user_version;");
  if (s.Step() != SQLITE_ROW) return SqlError(r.db(), "user_version");
  return static_cast<int>(s.Int(0));
}

absl::Status Store::Migrate() {
  int version;
  {
    Stmt s(db_, "PRAGMA user_version;");
    if (s.Step() != SQLITE_ROW) return SqlError(db_, "user_version");
    version = static_cast<int>(s.Int(0));
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("data_dir: database schema version ", version,
                                                      " is newer than this server's ",
                                                      kSchemaVersion));
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    Tx tx(this);
    if (!tx.status().ok()) return tx.status();
    if (auto s = Exec(db_, kMigrations[v]); !s.ok()) return s;
    if (auto s = Exec(db_, absl::StrCat("PRAGMA user_version=", v + 1, ";")); !s.ok()) return s;
    if (auto s = tx.Commit(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Datasets

absl::Status Store::ReserveDataset(const DatasetInfo& d) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  if (auto s = ClaimDatasetName(db_, d, ""); !s.ok()) return s;
  return tx.Commit();
}

absl::Status Store::AddItems(const std::string& dataset, const std::vector<ItemRow>& items) {
  for (size_t begin = 0; begin < items.size(); begin += kInsertBatch) {
    Tx tx(this);
    if (!tx.status().ok()) return tx.status();
    Stmt it(db_,
            "INSERT INTO items(dataset, idx, item_id, path, generation, missing) "
            "VALUES(?,?,?,?,?,?);");
    for (size_t i = begin; i < std::min(items.size(), begin + kInsertBatch); ++i) {
      it.Bind(1, dataset)
          .Bind(2, items[i].idx)
          .Bind(3, items[i].item_id)
          .Bind(4, items[i].path)
          .Bind(5, items[i].generation)
          .Bind(6, static_cast<int64_t>(items[i].missing));
      if (it.Step() != SQLITE_DONE) {
        if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_UNIQUE &&
            std::strstr(sqlite3_errmsg(db_), "item_id") != nullptr) {
          return absl::AlreadyExistsError(
              absl::StrCat("duplicate item id ", Quote(items[i].item_id)));
        }
        return SqlError(db_, "insert item");
      }
      it.Reset();
    }
    if (auto s = tx.Commit(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Store::CommitDataset(const std::string& dataset, const std::string& source_path,
                                  int64_t num_items, const std::vector<FailedItemRow>& failed,
                                  const std::string& chunk_source,
                                  const std::vector<FeatureChunk>& chunks) {
  // Failed items in short transactions first (the dataset is invisible until the
  // state flips), so that a million of them never hold the writer for long.
  for (size_t begin = 0; begin < failed.size(); begin += kInsertBatch) {
    const size_t end = std::min(failed.size(), begin + kInsertBatch);
    if (auto s = AddFailedItems(
            dataset, std::vector<FailedItemRow>(failed.begin() + begin, failed.begin() + end));
        !s.ok()) {
      return s;
    }
  }
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  if (auto s = InsertFeatureChunks(dataset, chunk_source, chunks); !s.ok()) return s;
  Stmt up(db_, "UPDATE datasets SET state=1, num_items=?, source_path=? WHERE name=? AND state=0;");
  up.Bind(1, num_items).Bind(2, source_path).Bind(3, dataset);
  if (auto s = up.Run("commit dataset"); !s.ok()) return s;
  if (sqlite3_changes(db_) != 1) {
    return absl::InternalError(
        absl::StrCat("dataset ", Quote(dataset), " was not being registered"));
  }
  return tx.Commit();
}

absl::StatusOr<std::vector<std::string>> Store::BeginDeleteDataset(const std::string& name) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  Stmt q(db_, "SELECT state FROM datasets WHERE name=?;");
  q.Bind(1, name);
  int rc = q.Step();
  if (rc == SQLITE_DONE || (rc == SQLITE_ROW && q.Int(0) == 0)) {
    return absl::NotFoundError(absl::StrCat("dataset: ", Quote(name), " not found"));
  }
  if (rc != SQLITE_ROW) return SqlError(db_, "look up dataset");
  // DELETING: a deletion that failed half way (a file it could not remove) is
  // continued by the next DeleteDataset.
  const bool continuing = q.Int(0) == static_cast<int>(DatasetState::kDeleting);
  Stmt busy(db_, "SELECT id FROM jobs WHERE dataset=? AND state IN (1, 2) LIMIT 1;");
  busy.Bind(1, name);
  rc = busy.Step();
  if (rc == SQLITE_ROW) {
    return absl::FailedPreconditionError(absl::StrCat("name: dataset ", Quote(name),
                                                      " has a queued or running job (",
                                                      busy.Text(0), "); cancel it first"));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "look up jobs");
  if (!continuing) {
    Stmt up(db_, "UPDATE datasets SET state=2 WHERE name=?;");
    up.Bind(1, name);
    if (auto s = up.Run("mark dataset deleting"); !s.ok()) return s;
  }
  Stmt j(db_, "SELECT id FROM jobs WHERE dataset=?;");
  j.Bind(1, name);
  auto ids = FirstColumn(db_, j, "list jobs");
  if (!ids.ok()) return ids.status();
  if (auto s = tx.Commit(); !s.ok()) return s;
  return ids;
}

absl::Status Store::RemoveDataset(const std::string& name, const std::string& keep_job) {
  // The many rows (items, failed items) go in short transactions first; the dataset
  // is REGISTERING or DELETING, so nobody reads them meanwhile.
  for (const char* table : {"items", "failed_items"}) {
    while (true) {
      Tx tx(this);
      if (!tx.status().ok()) return tx.status();
      Stmt d(db_, absl::StrCat("DELETE FROM ", table, " WHERE rowid IN (SELECT rowid FROM ", table,
                               " WHERE dataset=? LIMIT ", kInsertBatch, ");"));
      d.Bind(1, name);
      if (auto s = d.Run("remove dataset items"); !s.ok()) return s;
      const int n = sqlite3_changes(db_);
      if (auto s = tx.Commit(); !s.ok()) return s;
      if (n == 0) break;
    }
  }
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  const char* const kDeletes[] = {
      "DELETE FROM selections WHERE job_id IN (SELECT id FROM jobs WHERE dataset=?1);",
      "DELETE FROM prompts WHERE state=0 AND job_id IN (SELECT id FROM jobs WHERE dataset=?1);",
      "DELETE FROM jobs WHERE dataset=?1 AND id != ?2;",
      "DELETE FROM datasets WHERE name=?1;",  // items, failed items, chunks: ON DELETE CASCADE
  };
  for (const char* sql : kDeletes) {
    Stmt d(db_, sql);
    d.Bind(1, name).Bind(2, keep_job);  // an unused ?2 is ignored
    if (auto s = d.Run("remove dataset rows"); !s.ok()) return s;
  }
  return tx.Commit();
}

absl::StatusOr<std::vector<UnfinishedDataset>> Store::UnfinishedDatasets() {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(),
         "SELECT name, state, registration_job FROM datasets WHERE state != 1 ORDER BY name;");
  std::vector<UnfinishedDataset> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back({s.Text(0), static_cast<DatasetState>(s.Int(1)), s.Text(2)});
  }
  if (rc != SQLITE_DONE) return SqlError(r.db(), "list unfinished datasets");
  return out;
}

absl::StatusOr<std::vector<std::string>> Store::JobIdsOf(const std::string& dataset) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), "SELECT id FROM jobs WHERE dataset=? ORDER BY seq;");
  s.Bind(1, dataset);
  return FirstColumn(r.db(), s, "list job ids");
}

absl::Status Store::DropUncommittedItems(const std::string& dataset) {
  while (true) {
    Tx tx(this);
    if (!tx.status().ok()) return tx.status();
    Stmt d(db_, absl::StrCat("DELETE FROM items WHERE rowid IN (SELECT rowid FROM items WHERE "
                             "dataset=?1 AND idx >= (SELECT num_items FROM datasets WHERE "
                             "name=?1 AND state=1) LIMIT ",
                             kInsertBatch, ");"));
    d.Bind(1, dataset);
    if (auto s = d.Run("drop uncommitted items"); !s.ok()) return s;
    const int n = sqlite3_changes(db_);
    if (auto s = tx.Commit(); !s.ok()) return s;
    if (n == 0) return absl::OkStatus();
  }
}

absl::Status Store::CommitRefresh(const std::string& dataset, const RefreshCommit& c) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  Stmt q(db_, "SELECT num_items, generation FROM datasets WHERE name=? AND state=1;");
  q.Bind(1, dataset);
  int rc = q.Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("dataset: ", Quote(dataset), " not found"));
  }
  if (rc != SQLITE_ROW) return SqlError(db_, "look up dataset");
  if (q.Int(0) != c.expected_items || q.Int(1) != c.expected_generation) {
    return absl::AbortedError(
        absl::StrCat("dataset ", Quote(dataset), " changed while it was rescanned; refresh again"));
  }
  const bool grew = c.num_items > c.expected_items;
  for (const auto& [rows, flag] : {std::pair{&c.now_missing, 1}, std::pair{&c.found_again, 0}}) {
    Stmt m(db_, "UPDATE items SET missing=? WHERE dataset=? AND idx=?;");
    for (int64_t idx : *rows) {
      m.Bind(1, flag).Bind(2, dataset).Bind(3, idx);
      if (auto s = m.Run("mark missing items"); !s.ok()) return s;
      m.Reset();
    }
  }
  Stmt forget(db_, "DELETE FROM failed_items WHERE dataset=? AND item_id=?;");
  for (const auto& id : c.now_items) {
    forget.Bind(1, dataset).Bind(2, id);
    if (auto s = forget.Run("forget failed item"); !s.ok()) return s;
    forget.Reset();
  }
  if (auto s = InsertFailedItems(dataset, c.failed); !s.ok()) return s;
  Stmt up(db_,
          "UPDATE datasets SET num_items=?1, generation=generation+?2, num_missing=(SELECT "
          "COUNT(*) FROM items WHERE dataset=?3 AND missing=1 AND idx < ?1) WHERE name=?3;");
  up.Bind(1, c.num_items).Bind(2, static_cast<int64_t>(grew)).Bind(3, dataset);
  if (auto s = up.Run("commit refresh"); !s.ok()) return s;
  return tx.Commit();
}

absl::StatusOr<std::vector<int64_t>> Store::ExcludedItems(const std::string& dataset,
                                                          int64_t min_generation) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(),
         "SELECT idx FROM items WHERE dataset=?1 AND idx < (SELECT num_items FROM datasets WHERE "
         "name=?1) AND (missing=1 OR generation < ?2) ORDER BY idx;");
  s.Bind(1, dataset).Bind(2, min_generation);
  std::vector<int64_t> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(s.Int(0));
  if (rc != SQLITE_DONE) return SqlError(r.db(), "read excluded items");
  return out;
}

absl::StatusOr<DatasetInfo> Store::GetDataset(const std::string& name) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  return ReadDataset(r.db(), name);
}

absl::StatusOr<std::vector<DatasetInfo>> Store::ListDatasets() {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), "SELECT name FROM datasets WHERE state=1 ORDER BY name;");
  auto names = FirstColumn(r.db(), s, "list datasets");
  if (!names.ok()) return names.status();
  std::vector<DatasetInfo> out;
  for (const auto& n : *names) {
    auto d = ReadDataset(r.db(), n);
    if (!d.ok()) return d.status();
    out.push_back(std::move(*d));
  }
  return out;
}

absl::StatusOr<std::vector<ItemRow>> Store::Items(const std::string& dataset) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  std::vector<ItemRow> out;
  Stmt s(r.db(), absl::StrCat("SELECT ", kItemCols, " FROM items WHERE dataset=? ORDER BY idx;"));
  s.Bind(1, dataset);
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(ReadItem(s));
  if (rc != SQLITE_DONE) return SqlError(r.db(), "read items");
  return out;
}

absl::StatusOr<std::vector<ItemRow>> Store::ItemsRange(const std::string& dataset, int64_t begin,
                                                       int64_t end) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  std::vector<ItemRow> out;
  if (end > begin) out.reserve(static_cast<size_t>(std::min<int64_t>(end - begin, 1 << 16)));
  Stmt s(r.db(), absl::StrCat("SELECT ", kItemCols,
                              " FROM items WHERE dataset=? AND idx>=? AND idx<? ORDER BY idx;"));
  s.Bind(1, dataset).Bind(2, begin).Bind(3, end);
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(ReadItem(s));
  if (rc != SQLITE_DONE) return SqlError(r.db(), "read items");
  return out;
}

absl::StatusOr<std::vector<ItemRow>> Store::ItemsAt(const std::string& dataset,
                                                    const std::vector<int64_t>& idx) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), absl::StrCat("SELECT ", kItemCols, " FROM items WHERE dataset=?1 AND idx IN (",
                              Placeholders(kLookupBatch), ");"));
  std::vector<ItemRow> out;
  out.reserve(idx.size());
  std::unordered_map<int64_t, ItemRow> found;
  for (size_t begin = 0; begin < idx.size(); begin += kLookupBatch) {
    const size_t end = std::min(idx.size(), begin + kLookupBatch);
    s.Reset();
    s.Bind(1, dataset);
    // A short last batch repeats its last value: one statement serves every batch.
    for (size_t k = 0; k < kLookupBatch; ++k) {
      s.Bind(static_cast<int>(k + 2), idx[std::min(begin + k, end - 1)]);
    }
    found.clear();
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      found.emplace(s.Int(0), ReadItem(s));
    }
    if (rc != SQLITE_DONE) return SqlError(r.db(), "read items");
    for (size_t i = begin; i < end; ++i) {
      auto it = found.find(idx[i]);
      if (it == found.end()) {
        return absl::NotFoundError(
            absl::StrCat("item index ", idx[i], " is not an item of ", Quote(dataset)));
      }
      out.push_back(it->second);  // a copy: an idx may be asked for twice
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> Store::FindItemIds(
    const std::string& dataset, const std::vector<std::string>& ids) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  // Items a refresh is still appending (idx >= num_items) are not items yet.
  Stmt s(r.db(), absl::StrCat("SELECT item_id, idx FROM items WHERE dataset=?1 AND idx < (SELECT "
                              "num_items FROM datasets WHERE name=?1) AND item_id IN (",
                              Placeholders(kLookupBatch), ");"));
  std::vector<std::pair<std::string, int64_t>> out;
  std::unordered_map<std::string, int64_t> found;
  for (size_t begin = 0; begin < ids.size(); begin += kLookupBatch) {
    const size_t end = std::min(ids.size(), begin + kLookupBatch);
    s.Reset();
    s.Bind(1, dataset);
    for (size_t k = 0; k < kLookupBatch; ++k) {
      s.Bind(static_cast<int>(k + 2), ids[std::min(begin + k, end - 1)]);
    }
    found.clear();
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) found.emplace(s.Text(0), s.Int(1));
    if (rc != SQLITE_DONE) return SqlError(r.db(), "look up item ids");
    for (size_t i = begin; i < end; ++i) {
      auto it = found.find(ids[i]);
      if (it != found.end()) out.emplace_back(ids[i], it->second);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> Store::UnknownItemIds(const std::string& dataset,
                                                               const std::vector<std::string>& ids,
                                                               size_t max) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(),
         "SELECT 1 FROM items WHERE dataset=?1 AND item_id=?2 AND idx < (SELECT num_items FROM "
         "datasets WHERE name=?1);");
  std::vector<std::string> unknown;
  for (const auto& id : ids) {
    s.Bind(1, dataset).Bind(2, id);
    const int rc = s.Step();
    if (rc == SQLITE_DONE) {
      unknown.push_back(id);
      if (unknown.size() >= max) break;
    } else if (rc != SQLITE_ROW) {
      return SqlError(r.db(), "look up item id");
    }
    s.Reset();
  }
  return unknown;
}

absl::Status Store::AddFailedItems(const std::string& dataset,
                                   const std::vector<FailedItemRow>& rows) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  if (auto s = InsertFailedItems(dataset, rows); !s.ok()) return s;
  return tx.Commit();
}

absl::Status Store::AddFeatureChunk(const std::string& dataset, const std::string& source,
                                    const FeatureChunk& c) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  if (auto s = InsertFeatureChunks(dataset, source, {c}); !s.ok()) return s;
  return tx.Commit();
}

absl::Status Store::AttachFeatureChunks(const std::string& dataset, const std::string& source,
                                        const std::vector<FeatureChunk>& chunks,
                                        const std::vector<FailedItemRow>& failed) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  Stmt q(db_, "SELECT COUNT(*) FROM feature_chunks WHERE dataset=? AND source=?;");
  q.Bind(1, dataset).Bind(2, source);
  if (q.Step() != SQLITE_ROW) return SqlError(db_, "count feature chunks");
  if (q.Int(0) > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset: ", Quote(dataset), " already has ", q.Int(0), " '", source,
                     "' feature chunks; attach to a dataset without them"));
  }
  if (auto s = InsertFeatureChunks(dataset, source, chunks); !s.ok()) return s;
  if (auto s = InsertFailedItems(dataset, failed); !s.ok()) return s;
  return tx.Commit();
}

absl::Status Store::InsertFeatureChunks(const std::string& dataset, const std::string& source,
                                        const std::vector<FeatureChunk>& chunks) {
  // end -1: the chunk's items as the dataset has them now.
  Stmt c(db_,
         "INSERT OR REPLACE INTO feature_chunks(dataset, source, chunk, count, path, end_idx) "
         "VALUES(?1,?2,?3,?4,?5,CASE WHEN ?6 >= 0 THEN ?6 ELSE (SELECT MIN((?3 + 1) * "
         "chunk_size, num_items) FROM datasets WHERE name=?1) END);");
  for (const FeatureChunk& chunk : chunks) {
    c.Bind(1, dataset)
        .Bind(2, source)
        .Bind(3, chunk.chunk)
        .Bind(4, chunk.count)
        .Bind(5, chunk.path)
        .Bind(6, chunk.end);
    if (auto s = c.Run("insert feature chunk"); !s.ok()) return s;
    c.Reset();
  }
  return absl::OkStatus();
}

absl::Status Store::InsertFailedItems(const std::string& dataset,
                                      const std::vector<FailedItemRow>& rows) {
  Stmt fi(db_,
          "INSERT OR REPLACE INTO failed_items(dataset, item_id, path, error) VALUES(?,?,?,?);");
  for (const auto& r : rows) {
    fi.Bind(1, dataset).Bind(2, r.item_id).Bind(3, r.path).Bind(4, r.error);
    if (auto s = fi.Run("insert failed item"); !s.ok()) return s;
    fi.Reset();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<FeatureChunk>> Store::FeatureChunks(const std::string& dataset,
                                                               const std::string& source) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  std::vector<FeatureChunk> out;
  Stmt s(
      r.db(),
      "SELECT chunk, count, path, end_idx FROM feature_chunks WHERE dataset=? AND source=? ORDER "
      "BY chunk;");
  s.Bind(1, dataset).Bind(2, source);
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back({s.Int(0), s.Int(1), s.Text(2), s.Int(3)});
  if (rc != SQLITE_DONE) return SqlError(r.db(), "read feature chunks");
  return out;
}

// ---------------------------------------------------------------------------
// Jobs

namespace {

// Reserves `name` for `job_id` (a LEARN_PROMPT job) or stores a READY prompt row
// (job_id empty), inside the caller's write transaction.
absl::Status ClaimPromptName(sqlite3* db, const PromptInfo& p, const std::string& job_id) {
  Stmt q(db,
         "SELECT p.state, p.job_id, j.state FROM prompts p LEFT JOIN jobs j ON j.id = p.job_id "
         "WHERE p.name=?;");
  q.Bind(1, p.name);
  int rc = q.Step();
  if (rc == SQLITE_ROW) {
    const bool learning = q.Int(0) == kPromptLearning;
    const std::string owner = q.Text(1);
    const auto owner_state = q.IsNull(2) ? JobState::kFailed : static_cast<JobState>(q.Int(2));
    if (!learning) {
      return absl::AlreadyExistsError(
          absl::StrCat("prompt_name: prompt ", Quote(p.name), " already exists"));
    }
    if (owner_state != JobState::kFailed && owner_state != JobState::kCancelled) {
      return absl::AlreadyExistsError(absl::StrCat("prompt_name: ", Quote(p.name),
                                                   " is being learned by ", owner, " (",
                                                   JobStateName(owner_state), ")"));
    }
    Stmt d(db, "DELETE FROM prompts WHERE name=?;");  // take over a dead reservation
    d.Bind(1, p.name);
    if (auto s = d.Run("release prompt reservation"); !s.ok()) return s;
  } else if (rc != SQLITE_DONE) {
    return SqlError(db, "look up prompt");
  }
  Stmt s(db,
         "INSERT INTO prompts(name, dataset, model_identity, num_context, num_clusters, "
         "config_json, path, created_ms, state, job_id) VALUES(?,?,?,?,?,?,?,?,?,?);");
  s.Bind(1, p.name)
      .Bind(2, p.dataset)
      .Bind(3, p.model_identity)
      .Bind(4, p.num_context)
      .Bind(5, p.num_clusters)
      .Bind(6, p.config_json)
      .Bind(7, p.path)
      .Bind(8, p.created_ms)
      .Bind(9, job_id.empty() ? kPromptReady : kPromptLearning)
      .Bind(10, job_id);
  return s.Run("insert prompt");
}

}  // namespace

namespace {

absl::Status ReclaimPromptName(sqlite3* db, const std::string& name, const std::string& job_id) {
  Stmt q(db, "SELECT job_id FROM prompts WHERE name=?;");
  q.Bind(1, name);
  const int rc = q.Step();
  if (rc == SQLITE_ROW) {
    if (q.Text(0) == job_id) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("job_id: '", job_id, "': its prompt name ", Quote(name),
                     " was taken by an import or another job meanwhile; start a new LearnPrompt"));
  }
  if (rc != SQLITE_DONE) return SqlError(db, "look up prompt");
  Stmt ins(
      db,
      "INSERT INTO prompts(name, dataset, model_identity, num_context, num_clusters, "
      "config_json, path, created_ms, state, job_id) VALUES(?, '', '', 0, 0, '', '', 0, 0, ?);");
  ins.Bind(1, name).Bind(2, job_id);
  return ins.Run("reserve prompt");
}

}  // namespace

absl::StatusOr<JobInfo> Store::CreateJob(const std::string& dataset, const JobParams& params) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  const auto* reg = std::get_if<RegisterParams>(&params);
  if (!reg) {
    Stmt q(db_, "SELECT state FROM datasets WHERE name=?;");
    q.Bind(1, dataset);
    int rc = q.Step();
    if (rc == SQLITE_DONE || (rc == SQLITE_ROW && q.Int(0) == 0)) {
      return absl::NotFoundError(absl::StrCat("dataset: ", Quote(dataset), " not found"));
    }
    if (rc != SQLITE_ROW) return SqlError(db_, "look up dataset");
    if (q.Int(0) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("dataset: ", Quote(dataset), " is being deleted"));
    }
  }
  if (std::holds_alternative<RefreshParams>(params)) {
    Stmt busy(db_, "SELECT id FROM jobs WHERE dataset=? AND kind=? AND state IN (1, 2) LIMIT 1;");
    busy.Bind(1, dataset).Bind(2, static_cast<int64_t>(JobKind::kRefresh));
    const int rc = busy.Step();
    if (rc == SQLITE_ROW) {
      return absl::FailedPreconditionError(absl::StrCat(
          "name: dataset ", Quote(dataset), " is already being refreshed (", busy.Text(0), ")"));
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "look up refresh jobs");
  }
  int64_t seq = 1;
  {
    // AUTOINCREMENT's high-water mark: ids of deleted jobs are never handed out again.
    Stmt q(db_,
           "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name='jobs'), 0), "
           "COALESCE((SELECT MAX(seq) FROM jobs), 0)) + 1;");
    if (q.Step() != SQLITE_ROW) return SqlError(db_, "next job id");
    seq = q.Int(0);
  }
  JobInfo j;
  j.id = absl::StrCat("job-", seq);
  j.kind = KindOf(params);
  j.state = JobState::kQueued;
  j.dataset = dataset;
  j.params = params;
  j.params_json = ParamsToJson(params);
  j.created_ms = NowMs();
  if (auto* lp = std::get_if<LearnPromptParams>(&params)) {
    PromptInfo reservation;
    reservation.name = lp->prompt_name;
    reservation.dataset = dataset;
    reservation.created_ms = j.created_ms;
    if (auto s = ClaimPromptName(db_, reservation, j.id); !s.ok()) return s;
  }
  if (reg) {
    // A REGISTER job reserves the name it fills: the dataset row (REGISTERING, naming
    // this job) and the job are created together or not at all.
    DatasetInfo d;
    d.name = dataset;
    d.source_kind = reg->source_kind;
    d.source_path = reg->path;
    d.chunk_size = reg->chunk_size;
    d.created_ms = j.created_ms;
    if (auto s = ClaimDatasetName(db_, d, j.id); !s.ok()) return s;
  }
  Stmt s(db_,
         "INSERT INTO jobs(seq, id, kind, state, dataset, params_json, created_ms) "
         "VALUES(?,?,?,?,?,?,?);");
  s.Bind(1, seq)
      .Bind(2, j.id)
      .Bind(3, static_cast<int64_t>(j.kind))
      .Bind(4, static_cast<int64_t>(j.state))
      .Bind(5, dataset)
      .Bind(6, j.params_json)
      .Bind(7, j.created_ms);
  if (auto st = s.Run("insert job"); !st.ok()) return st;
  if (auto st = tx.Commit(); !st.ok()) return st;
  return j;
}

absl::Status Store::Transition(const std::string& id, JobState from, JobState to,
                               const JobInfo& j) {
  if (!IsLegalTransition(from, to)) {
    return absl::InternalError(absl::StrCat("job_id: '", id, "': illegal transition ",
                                            JobStateName(from), " -> ", JobStateName(to)));
  }
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  if (const auto* lp = std::get_if<LearnPromptParams>(&j.params); lp && to == JobState::kQueued) {
    // A resumed LEARN_PROMPT job must still own its prompt name (an import may have
    // taken it over while the job was FAILED or CANCELLED): else it would train for
    // nothing and fail at its commit.
    if (auto s = ReclaimPromptName(db_, lp->prompt_name, id); !s.ok()) return s;
  }
  if (to == JobState::kQueued) {
    // A stopped registration was rolled back (its dataset row and files are gone, and
    // the name may be registered again): there is nothing to continue.
    Stmt k(db_, "SELECT kind FROM jobs WHERE id=?;");
    k.Bind(1, id);
    const int rc = k.Step();
    if (rc == SQLITE_ROW && static_cast<JobKind>(k.Int(0)) == JobKind::kRegister) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job_id: '", id,
          "' is a REGISTER job: a registration that did not finish was rolled back and "
          "cannot be resumed; register the dataset again"));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqlError(db_, "read job kind");
  }
  Stmt s(db_,
         "UPDATE jobs SET state=?1, stage=?2, done=?3, total=?4, rate=?5, message=?6, loss=?7, "
         "started_ms=?8, finished_ms=?9, error=?10, result_json=?11, error_code=?14 WHERE id=?12 "
         "AND state=?13 AND (?1 != 1 OR EXISTS (SELECT 1 FROM datasets d WHERE d.name = "
         "jobs.dataset AND d.state = 1));");
  s.Bind(1, static_cast<int64_t>(to))
      .Bind(2, j.progress.stage)
      .Bind(3, j.progress.done)
      .Bind(4, j.progress.total)
      .Bind(5, j.progress.rate)
      .Bind(6, j.progress.message);
  if (j.progress.loss.has_value()) {
    s.Bind(7, *j.progress.loss);
  } else {
    s.BindNull(7);
  }
  s.Bind(8, j.started_ms)
      .Bind(9, j.finished_ms)
      .Bind(10, j.error)
      .Bind(11, j.result_json)
      .Bind(12, id)
      .Bind(13, static_cast<int64_t>(from))
      .Bind(14, to == JobState::kFailed ? j.error_code : 0);
  if (auto st = s.Run("transition job"); !st.ok()) return st;
  if (sqlite3_changes(db_) == 1) {
    if (from == JobState::kQueued && to == JobState::kCancelled) {
      // A REGISTER job cancelled before it ran releases the name it reserved (nothing
      // else of that dataset exists yet).
      Stmt r(db_,
             "DELETE FROM datasets WHERE registration_job=?1 AND state=0 AND name=(SELECT "
             "dataset FROM jobs WHERE id=?1);");
      r.Bind(1, id);
      if (auto st = r.Run("release reserved dataset"); !st.ok()) return st;
    }
    return tx.Commit();
  }
  Stmt q(db_, "SELECT state FROM jobs WHERE id=?;");
  q.Bind(1, id);
  const int rc = q.Step();
  if (rc == SQLITE_DONE)
    return absl::NotFoundError(absl::StrCat("job_id: ", Quote(id), " not found"));
  if (rc != SQLITE_ROW) return SqlError(db_, "read job state");
  const auto now = static_cast<JobState>(q.Int(0));
  if (now == from) {
    return absl::FailedPreconditionError(
        absl::StrCat("job_id: '", id, "': its dataset is being deleted"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("job_id: '", id, "' is ", JobStateName(now), ", not ", JobStateName(from)));
}

absl::Status Store::UpdateProgress(const JobInfo& j) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  Stmt s(db_,
         "UPDATE jobs SET stage=?, done=?, total=?, rate=?, message=?, loss=?, result_json=? "
         "WHERE id=? AND state=2;");
  s.Bind(1, j.progress.stage)
      .Bind(2, j.progress.done)
      .Bind(3, j.progress.total)
      .Bind(4, j.progress.rate)
      .Bind(5, j.progress.message);
  if (j.progress.loss.has_value()) {
    s.Bind(6, *j.progress.loss);
  } else {
    s.BindNull(6);
  }
  s.Bind(7, j.result_json).Bind(8, j.id);
  if (auto st = s.Run("update progress"); !st.ok()) return st;
  return tx.Commit();
}

absl::StatusOr<JobInfo> Store::GetJob(const std::string& id) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), absl::StrCat("SELECT ", kJobCols, " FROM jobs WHERE id=?;"));
  s.Bind(1, id);
  const int rc = s.Step();
  if (rc == SQLITE_DONE)
    return absl::NotFoundError(absl::StrCat("job_id: ", Quote(id), " not found"));
  if (rc != SQLITE_ROW) return SqlError(r.db(), "read job");
  return ReadJob(s);
}

absl::StatusOr<std::vector<JobInfo>> Store::ListJobs(const std::string& dataset, JobState state,
                                                     int limit) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(),
         absl::StrCat("SELECT ", kJobCols,
                      " FROM jobs WHERE (?1 = '' OR dataset = ?1) AND (?2 = 0 OR state = ?2) "
                      "ORDER BY seq DESC LIMIT ?3;"));
  s.Bind(1, dataset).Bind(2, static_cast<int64_t>(state)).Bind(3, static_cast<int64_t>(limit));
  std::vector<JobInfo> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    auto j = ReadJob(s);
    if (!j.ok()) return j.status();
    out.push_back(std::move(*j));
  }
  if (rc != SQLITE_DONE) return SqlError(r.db(), "list jobs");
  return out;
}

absl::StatusOr<std::vector<std::string>> Store::JobIdsInState(JobState state) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), "SELECT id FROM jobs WHERE state=? ORDER BY seq;");
  s.Bind(1, static_cast<int64_t>(state));
  return FirstColumn(r.db(), s, "list job ids");
}

absl::StatusOr<std::vector<std::tuple<JobKind, JobState, int>>> Store::CountActiveJobs() {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(),
         "SELECT kind, state, COUNT(*) FROM jobs WHERE state IN (1, 2) GROUP BY kind, state;");
  std::vector<std::tuple<JobKind, JobState, int>> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.emplace_back(static_cast<JobKind>(s.Int(0)), static_cast<JobState>(s.Int(1)),
                     static_cast<int>(s.Int(2)));
  }
  if (rc != SQLITE_DONE) return SqlError(r.db(), "count jobs");
  return out;
}

absl::StatusOr<int> Store::MarkRunningInterrupted() {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  // RUNNING -> INTERRUPTED, the legal transition for "the process died under it".
  Stmt s(db_,
         "UPDATE jobs SET state=6, message='server stopped while the job ran; ResumeJob "
         "continues it' WHERE state=2;");
  if (auto st = s.Run("mark interrupted"); !st.ok()) return st;
  const int n = sqlite3_changes(db_);
  if (auto st = tx.Commit(); !st.ok()) return st;
  return n;
}

// ---------------------------------------------------------------------------
// Selections

absl::Status Store::SaveSelection(const std::string& job_id,
                                  const std::vector<SelectionRow>& rows) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  Stmt del(db_, "DELETE FROM selections WHERE job_id=?;");
  del.Bind(1, job_id);
  if (auto s = del.Run("clear selection"); !s.ok()) return s;
  Stmt ins(db_,
           "INSERT INTO selections(job_id, rank, item_idx, item_id, path, cluster, score) "
           "VALUES(?,?,?,?,?,?,?);");
  for (const auto& r : rows) {
    ins.Bind(1, job_id)
        .Bind(2, r.rank)
        .Bind(3, r.item_idx)
        .Bind(4, r.item_id)
        .Bind(5, r.path)
        .Bind(6, r.cluster)
        .Bind(7, r.score);
    if (auto s = ins.Run("insert selection"); !s.ok()) return s;
    ins.Reset();
  }
  return tx.Commit();
}

absl::StatusOr<std::vector<SelectionRow>> Store::GetSelection(const std::string& job_id,
                                                              int64_t offset, int64_t limit) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(),
         "SELECT rank, item_idx, item_id, path, cluster, score FROM selections WHERE job_id=? "
         "ORDER BY rank LIMIT ? OFFSET ?;");
  s.Bind(1, job_id).Bind(2, limit).Bind(3, offset);
  std::vector<SelectionRow> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back({s.Int(0), s.Int(1), s.Text(2), s.Text(3), s.Int(4), s.Real(5)});
  }
  if (rc != SQLITE_DONE) return SqlError(r.db(), "read selection");
  return out;
}

absl::StatusOr<int64_t> Store::CountSelection(const std::string& job_id) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), "SELECT COUNT(*) FROM selections WHERE job_id=?;");
  s.Bind(1, job_id);
  if (s.Step() != SQLITE_ROW) return SqlError(r.db(), "count selection");
  return s.Int(0);
}

// ---------------------------------------------------------------------------
// Prompts

absl::Status Store::CreatePrompt(const PromptInfo& p) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  if (auto s = ClaimPromptName(db_, p, ""); !s.ok()) return s;
  return tx.Commit();
}

absl::Status Store::CommitLearnedPrompt(const PromptInfo& p, const std::string& job_id) {
  Tx tx(this);
  if (!tx.status().ok()) return tx.status();
  Stmt s(db_,
         "UPDATE prompts SET state=1, dataset=?, model_identity=?, num_context=?, "
         "num_clusters=?, config_json=?, path=?, created_ms=? "
         "WHERE name=? AND job_id=? AND state IN (0, 1);");
  s.Bind(1, p.dataset)
      .Bind(2, p.model_identity)
      .Bind(3, p.num_context)
      .Bind(4, p.num_clusters)
      .Bind(5, p.config_json)
      .Bind(6, p.path)
      .Bind(7, p.created_ms)
      .Bind(8, p.name)
      .Bind(9, job_id);
  if (auto st = s.Run("commit prompt"); !st.ok()) return st;
  if (sqlite3_changes(db_) != 1) {
    return absl::AlreadyExistsError(absl::StrCat("prompt_name: ", Quote(p.name),
                                                 " was taken by an import or another job while ",
                                                 job_id, " was not running"));
  }
  return tx.Commit();
}

absl::StatusOr<PromptInfo> Store::GetPrompt(const std::string& name) {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), absl::StrCat("SELECT ", kPromptCols, " FROM prompts WHERE name=? AND state=1;"));
  s.Bind(1, name);
  const int rc = s.Step();
  if (rc == SQLITE_DONE)
    return absl::NotFoundError(absl::StrCat("prompt: ", Quote(name), " not found"));
  if (rc != SQLITE_ROW) return SqlError(r.db(), "read prompt");
  return ReadPrompt(s);
}

absl::StatusOr<std::vector<PromptInfo>> Store::ListPrompts() {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(),
         absl::StrCat("SELECT ", kPromptCols, " FROM prompts WHERE state=1 ORDER BY name;"));
  std::vector<PromptInfo> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(ReadPrompt(s));
  if (rc != SQLITE_DONE) return SqlError(r.db(), "list prompts");
  return out;
}

absl::StatusOr<std::string> Store::IntegrityCheck() {
  ReadLease r(this);
  if (!r.status().ok()) return r.status();
  Stmt s(r.db(), "PRAGMA integrity_check;");
  if (s.Step() != SQLITE_ROW) return SqlError(r.db(), "integrity_check");
  return s.Text(0);
}

}  // namespace updp::core
