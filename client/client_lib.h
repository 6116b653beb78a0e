// Client helpers shared by updpctl and the tests: formatting jobs, following a job
// with WatchJob, and writing selections.
#ifndef UPDP_CLIENT_CLIENT_LIB_H_
#define UPDP_CLIENT_CLIENT_LIB_H_

#include <grpcpp/grpcpp.h>

#include <iosfwd>
#include <memory>
#include <string>

#include "proto/updp/v1/updp.grpc.pb.h"

namespace updp::client {

std::string StateName(v1::JobState s);
std::string KindName(v1::JobKind k);
bool IsTerminal(v1::JobState s);
// A CSV field, quoted (RFC 4180) when it holds a comma, a quote or a line break.
std::string CsvField(const std::string& s);
// One-line summary of a job.
std::string JobLine(const v1::Job& j);
// "[#####-----]  50%  500/1000  12.3 img/s  ETA 0:41" (width chars for the bar).
std::string ProgressBar(const v1::Progress& p, int width);

// Follows a job until it ends: a live bar when `tty`, else one line per event.
// Returns the final job (or the last seen if the stream broke) and the stream status.
grpc::Status Watch(v1::Updp::Stub* stub, const std::string& job_id, bool tty, std::ostream& out,
                   v1::Job* final_job);

// How a selection is written: CSV (rank,item_id,path,cluster,score), JSON (the job, the
// dataset, the strategy and the items), or one path per line (paths, for tools that
// take a file list).
// Exports for labeling tools: Label Studio tasks JSON, a CVAT file list (one image
// reference per line, for a task's remote or share sources), a FiftyOne CSVDataset
// labels file (filepath + fields).
enum class SelectionFormat { kCsv, kJson, kPaths, kLabelStudio, kCvat, kFiftyOne };
// "csv" | "json" | "paths" | "labelstudio" | "cvat" | "fiftyone"; false for another name.
bool ParseSelectionFormat(const std::string& name, SelectionFormat* out);
// By the file's extension: .json is JSON, .txt paths, anything else (and "-") CSV.
SelectionFormat SelectionFormatForPath(const std::string& path);

// How the exports name an image: `prefix` + the path, made relative to `relative_to`
// first when that is set (a path outside it is an error naming the item). A prefix
// that is a URL (it has "://" or "?") gets the path percent-encoded (but '/'), e.g.
// Label Studio's local files: --prefix '/data/local-files/?d=' --relative-to ROOT.
struct ExportOptions {
  std::string prefix;
  std::string relative_to;
  std::string data_key = "image";  // Label Studio: the labeling config's $variable
};
// The reference the exports write for `path` (INVALID_ARGUMENT outside relative_to).
grpc::Status MediaReference(const ExportOptions& o, const std::string& item_id,
                            const std::string& path, std::string* out);

// Writes `text` to the file `path`, or to stdout for "-" (flushed); `what` names it in
// errors (e.g. "the selection").
grpc::Status WriteText(const std::string& path, const std::string& text, const std::string& what);

// Fetches every page of a selection and writes it in `format` to `path`, or to stdout
// when `path` is "-" (nothing else is written there).
grpc::Status WriteSelection(v1::Updp::Stub* stub, const std::string& job_id,
                            const std::string& path, SelectionFormat format,
                            const ExportOptions& options, int64_t* count);
grpc::Status WriteSelection(v1::Updp::Stub* stub, const std::string& job_id,
                            const std::string& path, SelectionFormat format, int64_t* count);
// The same, the format chosen by the path's extension.
grpc::Status WriteSelection(v1::Updp::Stub* stub, const std::string& job_id,
                            const std::string& path, int64_t* count);

}  // namespace updp::client

#endif  // UPDP_CLIENT_CLIENT_LIB_H_
