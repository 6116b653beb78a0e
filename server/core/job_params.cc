#include "server/core/job_params.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace updp::core {

using nlohmann::json;

const char* JobKindName(JobKind k) {
  switch (k) {
    case JobKind::kEmbed:
      return "EMBED";
    case JobKind::kLearnPrompt:
      return "LEARN_PROMPT";
    case JobKind::kSelect:
      return "SELECT";
    case JobKind::kRegister:
      return "REGISTER";
    case JobKind::kDuplicates:
      return "DUPLICATES";
    case JobKind::kRefresh:
      return "REFRESH";
    default:
      return "UNSPECIFIED";
  }
}

const char* SourceKindName(SourceKind k) {
  switch (k) {
    case SourceKind::kImages:
      return "images";
    case SourceKind::kManifest:
      return "manifest";
    case SourceKind::kEmbeddings:
      return "embeddings";
    default:
      return "unspecified";
  }
}

namespace {

SourceKind SourceKindFromName(const std::string& name) {
  for (SourceKind k : {SourceKind::kImages, SourceKind::kManifest, SourceKind::kEmbeddings}) {
    if (name == SourceKindName(k)) return k;
  }
  return SourceKind::kUnspecified;
}

}  // namespace

JobKind KindOf(const JobParams& p) {
  if (std::holds_alternative<EmbedParams>(p)) return JobKind::kEmbed;
  if (std::holds_alternative<LearnPromptParams>(p)) return JobKind::kLearnPrompt;
  if (std::holds_alternative<SelectParams>(p)) return JobKind::kSelect;
  if (std::holds_alternative<RegisterParams>(p)) return JobKind::kRegister;
  if (std::holds_alternative<DuplicatesParams>(p)) return JobKind::kDuplicates;
  if (std::holds_alternative<RefreshParams>(p)) return JobKind::kRefresh;
  return JobKind::kUnspecified;
}

std::string ParamsToJson(const JobParams& p) {
  json j = json::object();
  if (auto* e = std::get_if<EmbedParams>(&p)) {
    j = {{"batch_size", e->batch_size}, {"chunk_size", e->chunk_size}};
    if (!e->attach_dir.empty()) j["attach_dir"] = e->attach_dir;
  } else if (auto* l = std::get_if<LearnPromptParams>(&p)) {
    j = {{"prompt_name", l->prompt_name},
         {"num_context", l->num_context},
         {"num_clusters", l->num_clusters},
         {"intended_budget", l->intended_budget},
         {"epochs", l->epochs},
         {"batch_size", l->batch_size},
         {"learning_rate", l->learning_rate},
         {"views", l->views},
         {"seed", l->seed},
         {"init_phrase", l->init_phrase},
         {"max_train_items", l->max_train_items}};
  } else if (auto* s = std::get_if<SelectParams>(&p)) {
    j = {{"strategy", s->strategy},
         {"budget", s->budget},
         {"seed", s->seed},
         {"features", s->features},
         {"prompt", s->prompt},
         {"labeled_ids", s->labeled_ids},
         {"rule", s->rule},
         {"strict_labeled", s->strict_labeled},
         {"labeled_unknown", s->labeled_unknown},
         {"labeled_unknown_first", s->labeled_unknown_first},
         {"dedup", s->dedup},
         {"only_new", s->only_new},
         {"min_generation", s->min_generation}};
  } else if (auto* d = std::get_if<DuplicatesParams>(&p)) {
    j = {{"threshold", d->threshold}, {"features", d->features}};
  } else if (auto* r = std::get_if<RegisterParams>(&p)) {
    j = {{"source", SourceKindName(r->source_kind)},
         {"path", r->path},
         {"ids_path", r->ids_path},
         {"chunk_size", r->chunk_size}};
  }
  // Replace invalid UTF-8 (ids are client strings) instead of throwing.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<JobParams> ParamsFromJson(JobKind kind, const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::DataLossError(
        absl::StrCat("stored ", JobKindName(kind), " parameters are not a JSON object"));
  }
  // value() throws on a type mismatch; this is the one JSON boundary, so convert here.
  try {
    switch (kind) {
      case JobKind::kEmbed: {
        EmbedParams e;
        e.batch_size = j.value("batch_size", e.batch_size);
        e.chunk_size = j.value("chunk_size", e.chunk_size);
        e.attach_dir = j.value("attach_dir", e.attach_dir);
        return JobParams(e);
      }
      case JobKind::kLearnPrompt: {
        LearnPromptParams l;
        l.prompt_name = j.value("prompt_name", l.prompt_name);
        l.num_context = j.value("num_context", l.num_context);
        l.num_clusters = j.value("num_clusters", l.num_clusters);
        l.intended_budget = j.value("intended_budget", l.intended_budget);
        l.epochs = j.value("epochs", l.epochs);
        l.batch_size = j.value("batch_size", l.batch_size);
        l.learning_rate = j.value("learning_rate", l.learning_rate);
        l.views = j.value("views", l.views);
        l.seed = j.value("seed", l.seed);
        l.init_phrase = j.value("init_phrase", l.init_phrase);
        l.max_train_items = j.value("max_train_items", l.max_train_items);
        return JobParams(l);
      }
      case JobKind::kSelect: {
        SelectParams s;
        s.strategy = j.value("strategy", s.strategy);
        s.budget = j.value("budget", s.budget);
        s.seed = j.value("seed", s.seed);
        s.features = j.value("features", s.features);
        s.prompt = j.value("prompt", s.prompt);
        s.labeled_ids = j.value("labeled_ids", s.labeled_ids);
        s.rule = j.value("rule", s.rule);
        s.strict_labeled = j.value("strict_labeled", s.strict_labeled);
        s.labeled_unknown = j.value("labeled_unknown", s.labeled_unknown);
        s.labeled_unknown_first = j.value("labeled_unknown_first", s.labeled_unknown_first);
        s.dedup = j.value("dedup", s.dedup);
        s.only_new = j.value("only_new", s.only_new);
        s.min_generation = j.value("min_generation", s.min_generation);
        return JobParams(s);
      }
      case JobKind::kDuplicates: {
        DuplicatesParams d;
        d.threshold = j.value("threshold", d.threshold);
        d.features = j.value("features", d.features);
        return JobParams(d);
      }
      case JobKind::kRefresh:
        return JobParams(RefreshParams{});
      case JobKind::kRegister: {
        RegisterParams r;
        r.source_kind = SourceKindFromName(j.value("source", std::string()));
        r.path = j.value("path", r.path);
        r.ids_path = j.value("ids_path", r.ids_path);
        r.chunk_size = j.value("chunk_size", r.chunk_size);
        return JobParams(r);
      }
      default:
        break;
    }
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat("stored ", JobKindName(kind), " parameters: ", e.what()));
  }
  return absl::DataLossError("stored job of unknown kind");
}

}  // namespace updp::core
