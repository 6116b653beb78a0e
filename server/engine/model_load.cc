#include "server/engine/model_load.h"

#include "server/model/blip2_model.h"
#include "server/model/encoder.h"

namespace updp::engine {

absl::StatusOr<LoadedModel> LoadModelAndEncoder(const ModelSettings& s) {
  auto device = model::ParseDevice(s.device);
  if (!device.ok()) return device.status();
  auto dtype = model::ParseVisionDtype(s.precision, *device);
  if (!dtype.ok()) return dtype.status();
  auto attention = model::ParseAttention(s.attention);
  if (!attention.ok()) return attention.status();
  auto qdtype = model::ParseQFormerDtype(s.qformer_precision, *device, *dtype);
  if (!qdtype.ok()) return qdtype.status();
  model::ModelOptions mo;
  mo.device = *device;
  mo.vision_dtype = *dtype;
  mo.attention = *attention;
  mo.qformer_image_dtype = *qdtype;
  mo.fused_gelu = s.fused_gelu;
  auto m = model::Blip2Model::Load(s.model_dir, mo);
  if (!m.ok()) return m.status();
  LoadedModel out;
  out.model = std::move(*m);
  model::EncoderOptions eo;
  eo.decode_threads = s.decode_threads;
  eo.cuda_graphs = s.cuda_graphs;
  out.encoder = std::make_shared<model::ImageEncoder>(out.model, eo);
  out.device = *device;
  out.vision_dtype = *dtype;
  return out;
}

}  // namespace updp::engine
