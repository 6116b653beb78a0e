// The REFRESH job: rescans an images/manifest dataset's source. Files not seen before
// become new items, appended after the last one (ids and indexes of existing items
// never change); items whose files are gone are marked missing (and found again when
// they come back). Nothing is visible until one commit transaction, which also checks
// that the dataset did not change meanwhile; a refresh that stops before it leaves
// nothing behind, so an interrupted one is simply run again.
#include <iostream>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "server/core/names.h"
#include "server/core/registration.h"
#include "server/core/registration_progress.h"
#include "server/core/server_core.h"
#include "server/util/error_text.h"

namespace updp::core {

namespace {

constexpr int64_t kPage = 10000;  // items read per page, and appended per AddItems call

// What the store has of one item, for the comparison with the listing.
struct Known {
  int64_t idx = 0;
  std::string path;
  bool missing = false;
  bool seen = false;
};

}  // namespace

absl::StatusOr<JobInfo> ServerCore::StartRefresh(const std::string& dataset) {
  if (auto s = ValidateName("name", dataset); !s.ok()) return s;
  auto d = store_->GetDataset(dataset);
  if (!d.ok()) return d.status();
  if (d->source_kind != SourceKind::kImages && d->source_kind != SourceKind::kManifest) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: dataset ", Quote(dataset), " was registered from ", SourceKindName(d->source_kind),
        ": only image-directory and manifest datasets can be refreshed; register the new "
        "embeddings as a dataset of their own"));
  }
  return jobs_->Submit(dataset, RefreshParams{});
}

absl::Status ServerCore::RunRefresh(JobContext& ctx) {
  const std::string name = ctx.job().dataset;
  // One refresh of a dataset at a time: both would append at the same indexes.
  {
    std::lock_guard<std::mutex> l(refresh_mu_);
    if (!refreshing_.insert(name).second) {
      return absl::FailedPreconditionError(
          absl::StrCat("dataset ", Quote(name), " is being refreshed by another job"));
    }
  }
  struct Release {
    ServerCore* core;
    std::string name;
    ~Release() {
      std::lock_guard<std::mutex> l(core->refresh_mu_);
      core->refreshing_.erase(name);
    }
  } release{this, name};
  absl::Status s = Refresh(ctx);
  if (!s.ok()) {
    // Whatever was appended is not an item: take it away now (else at the next refresh
    // or start).
    if (auto d = store_->DropUncommittedItems(name); !d.ok()) {
      std::cerr << "updp-server: refresh of '" << name << "': " << d << "\n";
    }
  }
  return s;
}

absl::Status ServerCore::Refresh(JobContext& ctx) {
  const std::string& name = ctx.job().dataset;
  RegistrationProgress progress(ctx);
  auto d = store_->GetDataset(name);
  if (!d.ok()) return d.status();
  if (auto s = store_->DropUncommittedItems(name); !s.ok()) return s;
  if (!progress.Report("list", 0, 0)) return JobStopped();
  // The source as registered (canonical); it must still lie inside the allowed roots.
  auto list = d->source_kind == SourceKind::kImages
                  ? ScanImageDirectory(*paths_, d->source_path, progress.AsListProgress())
              : d->source_kind == SourceKind::kManifest
                  ? ReadManifest(*paths_, d->source_path, progress.AsListProgress())
                  : absl::StatusOr<ItemList>(absl::FailedPreconditionError(
                        "only image-directory and manifest datasets can be refreshed"));
  if (!list.ok()) return list.status();
  // Every stored item's id (one page at a time from the store).
  std::unordered_map<std::string, Known> known;
  known.reserve(static_cast<size_t>(d->num_items));
  for (int64_t begin = 0; begin < d->num_items; begin += kPage) {
    if (!progress.Report("compare", begin, d->num_items)) return JobStopped();
    auto page = store_->ItemsRange(name, begin, std::min(d->num_items, begin + kPage));
    if (!page.ok()) return page.status();
    for (const ItemRow& it : *page) known[it.item_id] = {it.idx, it.path, it.missing, false};
  }
  Store::RefreshCommit c;
  c.expected_items = d->num_items;
  c.expected_generation = d->generation;
  int64_t path_changed = 0;
  std::vector<ItemRow> added;
  // Entries the listing could not use: a manifest lists them as items too, a directory
  // scan does not.
  std::unordered_set<std::string> failed_ids;
  for (const FailedItemRow& f : list->failed) failed_ids.insert(f.item_id);
  for (const ItemRow& it : list->items) {
    auto k = known.find(it.item_id);
    if (k == known.end()) {  // new, even if unusable (as a registration would have it)
      ItemRow row = it;
      row.idx = d->num_items + static_cast<int64_t>(added.size());
      row.generation = d->generation + 1;
      added.push_back(std::move(row));
      c.now_items.push_back(it.item_id);
      continue;
    }
    if (failed_ids.count(it.item_id)) continue;  // its file is gone: missing below
    k->second.seen = true;
    if (k->second.missing) c.found_again.push_back(k->second.idx);
    // An id a manifest now maps to another file keeps its path and its features: the
    // id says it is the same item. Counted in the result.
    if (k->second.path != it.path) ++path_changed;
  }
  for (const FailedItemRow& f : list->failed) {
    if (!known.count(f.item_id)) c.failed.push_back(f);  // a known one becomes missing
  }
  int64_t still_missing = 0;
  for (const auto& [id, k] : known) {
    if (!k.seen) {
      if (k.missing) {
        ++still_missing;
      } else {
        c.now_missing.push_back(k.idx);
      }
    }
  }
  // The new items, at indexes no reader looks at until the commit.
  const auto n_added = static_cast<int64_t>(added.size());
  for (int64_t begin = 0; begin < n_added; begin += kPage) {
    if (!progress.Report("items", begin, n_added)) return JobStopped();
    const int64_t end = std::min(n_added, begin + kPage);
    const std::vector<ItemRow> batch(added.begin() + begin, added.begin() + end);
    if (auto s = store_->AddItems(name, batch); !s.ok()) return s;
  }
  if (!progress.Report("items", n_added, n_added)) return JobStopped();
  c.num_items = d->num_items + n_added;
  if (auto s = store_->CommitRefresh(name, c); !s.ok()) return s;
  ctx.SetResult(absl::StrCat(
      "{\"items_before\":", d->num_items, ",\"added\":", n_added, ",\"num_items\":", c.num_items,
      ",\"now_missing\":", c.now_missing.size(), ",\"found_again\":", c.found_again.size(),
      ",\"still_missing\":", still_missing, ",\"failed\":", c.failed.size(), ",\"path_changed\":",
      path_changed, ",\"generation\":", d->generation + (n_added > 0 ? 1 : 0), "}"));
  return absl::OkStatus();
}

}  // namespace updp::core
