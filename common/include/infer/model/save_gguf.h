// save_gguf.h: writes a model file's tensors in a chosen WeightFormat as a GGUF (--save-gguf).
//
// Every matrix is stored as Weights would hold it (Weights::target_dtype: quantized from its float32
// dequantization with the GGUF-compatible quantizers of dtype.h, or copied byte for byte when the
// dtype does not change); 1-D tensors stay as stored. A GGUF source keeps all its metadata
// (tokenizer included) and its tensor order; general.file_type is set to the format's llama.cpp
// file type. Other sources get the llama.* and tokenizer.* keys load_gguf reads.
#pragma once

#include "infer/formats/model_file.h"
#include "infer/model/weights.h"

#include <string>

namespace infer {

void save_gguf(const ModelFile& file, WeightFormat format, const std::string& path);

}  // namespace infer
