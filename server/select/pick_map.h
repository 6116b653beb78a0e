// What a selection report shows besides the picks: which pick each pool row is
// grouped under (cluster sizes and picks per cluster) and a 2-D PCA map of the
// features with the picks on it. Computed once, when a SELECT job succeeds.
//
// The clusters: every row belongs to the cluster of its nearest pick (cosine on the
// normalised features, as the selection saw them). A pick keeps the strategy's
// cluster id (kmeans, typiclust, usl, probcover, updp); a pick without one (random,
// kcenter, activeft, ...) is a cluster of its own, numbered after the strategy's ids.
// One rule for every strategy, so reports compare across strategies.
#ifndef UPDP_SERVER_SELECT_PICK_MAP_H_
#define UPDP_SERVER_SELECT_PICK_MAP_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "server/select/feature_source.h"
#include "server/select/strategy.h"
#include "server/select/thread_pool.h"

namespace updp::select {

struct PickMapOptions {
  int64_t pca_sample = 20000;       // rows the two components are fitted on (random, seeded)
  int64_t max_other_points = 5000;  // map points that are not picks (from that sample)
  uint64_t seed = 0;
  bool normalize = true;  // as SelectOptions::normalize
};

struct MapPoint {
  int64_t row = 0;
  float x = 0, y = 0;
  int64_t pick = -1;  // index into the picks, -1 for another row
  int64_t cluster = 0;
};

struct MapCluster {
  int64_t id = 0;
  int64_t size = 0;   // rows grouped under its picks
  int64_t picks = 0;  // picks in it
};

struct PickMap {
  std::vector<MapCluster> clusters;   // by increasing id; sizes sum to the rows
  std::vector<int64_t> pick_cluster;  // per pick
  std::vector<MapPoint> points;       // every pick (in pick order), then other rows
  double explained[2] = {0, 0};       // the sample's variance share along x and y
  int64_t sample_rows = 0;
};

// INVALID_ARGUMENT without picks or with a pick out of range; CANCELLED when
// `cancelled` fires. Memory: 8 bytes per row (nearest pick and its distance) plus
// the sample; one pass over the rows.
absl::StatusOr<PickMap> ComputePickMap(const FeatureSource& x, const std::vector<Pick>& picks,
                                       const PickMapOptions& o, ThreadPool& pool,
                                       const CancelledFn& cancelled = nullptr);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_PICK_MAP_H_
