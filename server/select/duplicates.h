// Near-duplicates: every pair of rows whose cosine similarity reaches a threshold,
// found without an N x N matrix, and their grouping under representatives. Used by
// the DUPLICATES job (listing) and by Select's dedup option (picks that are never
// near-duplicates of each other or of a labeled row).
#ifndef UPDP_SERVER_SELECT_DUPLICATES_H_
#define UPDP_SERVER_SELECT_DUPLICATES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/select/feature_source.h"
#include "server/select/kmeans.h"
#include "server/select/strategy.h"
#include "server/select/thread_pool.h"

namespace updp::select {

struct DuplicateParameters {
  // Cosine similarity in (0, 1] (rows are compared L2-normalised); 0 = off (Select).
  double threshold = 0;
  // Up to this many rows every pair is compared, block against block (exact).
  int64_t exact_max_rows = 16384;
  // Above it, a cell search (an inverted file, like FAISS's IndexIVF): rows are
  // bucketed by their nearest of `cells` k-means centroids (0: sqrt(probes * N), where
  // the cost of assigning rows to cells equals the cost of comparing them inside
  // cells, ~2 N D sqrt(probes N) multiply-adds), and every row is compared with the
  // rows of its `probes` nearest cells. A pair is missed only when neither row's
  // probes reach the other's cell; near-duplicates lie close together, so that is
  // rare at the thresholds of interest (recall measured in docs/PERFORMANCE.md).
  int64_t cells = 0;
  int probes = 4;
  uint64_t seed = 0;
  // The request field errors name (Select's option is "dedup").
  std::string field = "threshold";
  // The cells' k-means: always sampled (a sample of max_points_per_centroid * cells
  // rows, niter Lloyd iterations); the cells only need to be roughly balanced.
  KMeansParameters kmeans = [] {
    KMeansParameters k;
    k.full_max_work = 0;
    k.niter = 8;
    k.max_points_per_centroid = 32;
    k.init_points_per_centroid = 4;
    return k;
  }();
};

struct SimilarPair {
  int64_t a = 0, b = 0;  // rows, a < b
  float similarity = 0;
};

struct PairSearchStats {
  bool exact = true;
  int64_t cells = 0;
  int probes = 0;
  int64_t products = 0;  // row-row dot products computed
  double seconds = 0;
};

// Every pair with cosine similarity >= p.threshold (each once, sorted by (a, b)).
// INVALID_ARGUMENT for a threshold outside (0, 1] and RESOURCE_EXHAUSTED beyond 64M
// pairs (both naming p.field); CANCELLED when `cancelled` fires.
absl::StatusOr<std::vector<SimilarPair>> FindSimilarPairs(const FeatureSource& x,
                                                          const DuplicateParameters& p,
                                                          ThreadPool& pool,
                                                          const CancelledFn& cancelled = nullptr,
                                                          const ProgressFn& progress = nullptr,
                                                          PairSearchStats* stats = nullptr);

struct DuplicateGroup {
  std::vector<int64_t> rows;        // rows[0] is the representative
  std::vector<float> similarities;  // to the representative (1 for itself)
};

struct Grouping {
  std::vector<DuplicateGroup> groups;  // of two rows or more, by representative
  std::vector<char> duplicate;         // [N] 1 = claimed by a representative
};

// Rows in index order: a row that no earlier representative claimed (and that `skip`
// does not leave out) becomes a representative and claims its unclaimed later
// neighbours. So every duplicate is within the threshold of its representative, and
// the representatives are pairwise below it (given every pair of `pairs`).
// `keep_groups` false: only the `duplicate` mask (what a deduplicated selection needs).
Grouping GroupDuplicates(int64_t n, const std::vector<SimilarPair>& pairs,
                         const std::vector<char>* skip = nullptr, bool keep_groups = true);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_DUPLICATES_H_
