// gguf.h: the GGUF container (v2/v3) below load_gguf: metadata values, tensor infos, a parser and a
// streaming writer. load_gguf (model_file.h) turns a parsed file into a ModelFile; the synthetic
// models and the tests build files with GgufWriter.
//
// Layout (little-endian):
//   u32 magic "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
//   metadata_kv_count x { string key | u32 value_type | value }
//   tensor_count x { string name | u32 n_dims | u64 dims[n_dims] (innermost first) | u32 ggml_type | u64 offset }
//   padding to general.alignment (default 32), then the tensor data; offsets are relative to it.
// A string is u64 length + bytes (no NUL); an array is u32 element_type + u64 count + elements.
#pragma once

#include "infer/core/dtype.h"
#include "infer/core/mapped_file.h"

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace infer {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};

// One metadata value. Integers and bools live in `integer` (as int64; u64 values above INT64_MAX
// keep their bit pattern), floats in `real`, strings in `text`, arrays in `elements`.
struct GgufValue {
  GgufType type = GgufType::U32;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;
  GgufType element_type = GgufType::U8;  // arrays only
  std::vector<GgufValue> elements;       // arrays only

  static GgufValue make_int(GgufType type, int64_t value);  // any integer type or BOOL
  static GgufValue make_float(GgufType type, double value); // F32 or F64
  static GgufValue make_string(std::string value);
  static GgufValue make_array(GgufType element_type, std::vector<GgufValue> elements);

  bool is_integer() const;  // U8..I64 and BOOL
  bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
  bool operator==(const GgufValue& other) const;
};

// ggml type ids of the tensor types this engine reads (F32=0, F16=1, Q4_0=2, Q4_1=3, Q5_0=6, Q5_1=7,
// Q8_0=8, Q4_K=12, Q5_K=13, Q6_K=14, BF16=30).
uint32_t ggml_type_id(DType type);
std::optional<DType> dtype_from_ggml_type(uint32_t id);

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: innermost (row length) first
  uint32_t type_id = 0;
  uint64_t offset = 0;         // relative to the data section
};

struct GgufFile {
  uint32_t version = 3;
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order, keys unique
  std::vector<GgufTensorInfo> tensors;                      // in file order, names unique
  uint64_t alignment = 32;
  size_t data_offset = 0;  // file offset of the data section

  const GgufValue* find(const std::string& key) const;
};

// Parses and validates the header, metadata and tensor infos of a mapped GGUF file (not the tensor
// data ranges or types: load_gguf checks those). Throws infer::Error naming the file.
GgufFile parse_gguf(const MappedFile& file);

// Writes a GGUF v3 file in two steps so that huge models can be streamed: declare the metadata and
// every tensor first (offsets are computed from the sizes), then write_header(), then each tensor's
// bytes in declaration order with write_tensor_data(), then finish().
class GgufWriter {
 public:
  explicit GgufWriter(std::string path, uint64_t alignment = 32);
  void set(const std::string& key, GgufValue value);
  // shape outermost first (as in TensorView); stored reversed, innermost first.
  void add_tensor(const std::string& name, const std::vector<int64_t>& shape, DType dtype);
  // Low level, for tests that build malformed files: ggml dims innermost first, any type id.
  void add_tensor_raw(const std::string& name, std::vector<uint64_t> dims, uint32_t type_id, uint64_t n_bytes);
  void write_header();
  void write_tensor_data(const void* data, size_t n_bytes);
  void finish();

 private:
  std::string path_;
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::vector<uint64_t> tensor_bytes_;
  uint64_t next_offset_ = 0;
  size_t tensors_written_ = 0;
  uint64_t data_written_ = 0;
  std::ofstream out_;
};

}  // namespace infer
