// safetensors.h: helpers shared by the safetensors loader, the synthetic writer and the tests.
//
// A .safetensors file is: u64 little-endian header length N | N bytes of JSON | raw tensor data.
// The JSON maps each tensor name to {"dtype": "F32"|"F16"|"BF16"|..., "shape": [...],
// "data_offsets": [begin, end]} (offsets relative to the end of the header), plus an optional
// "__metadata__" object of strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace infer {

// HF Llama names <-> canonical (GGUF) names, e.g. model.layers.3.self_attn.q_proj.weight <->
// blk.3.attn_q.weight. Returns nullopt for names that are not Llama weights (e.g. rotary inv_freq).
std::optional<std::string> canonical_name_from_hf(const std::string& hf_name);
std::string hf_name_from_canonical(const std::string& canonical_name);  // throws infer::Error if unknown

// Reorders the rows of a Q or K projection (n_heads * head_dim, cols) between the two RoPE layouts.
// Within each head, HalfSplit row j (j < head_dim/2) is Interleaved row 2j, and HalfSplit row
// j + head_dim/2 is Interleaved row 2j + 1: the pair (2j, 2j+1) rotated by frequency j in the
// Interleaved layout is the pair (j, j + head_dim/2) rotated by the same frequency in HalfSplit.
// `rows` holds n_rows rows of row_bytes bytes each (any dtype whose rows are independent).
std::vector<uint8_t> permute_rows_interleaved_to_half_split(const void* rows, int64_t n_rows, int64_t row_bytes, int head_dim);
std::vector<uint8_t> permute_rows_half_split_to_interleaved(const void* rows, int64_t n_rows, int64_t row_bytes, int head_dim);

}  // namespace infer
