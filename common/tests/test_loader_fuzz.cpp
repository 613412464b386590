// test_loader_fuzz.cpp: every loader must turn a damaged file into infer::Error, never a crash or
// another exception type. Truncations at every header byte and through the data, seeded random
// corruptions, then specific damage with the exact message expected.
#include "format_test_helpers.h"
#include "infer/core/error.h"
#include "infer/formats/gguf.h"
#include "infer/formats/model_file.h"
#include "infer/formats/synthetic.h"
#include "test_util.h"

#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <random>

using namespace infer;
namespace fs = std::filesystem;

namespace {

// A small model so thousands of variants load quickly: 1 layer, dim 32, GQA 2/1, head_dim 16,
// vocab 279, untied (output.weight present).
ModelConfig fuzz_config() { return synthetic_preset("micro"); }

struct Outcome {
  int loaded = 0;
  int rejected = 0;
  int truncations = 0;                    // cuts tried, one at every length below the file's size
  std::vector<size_t> accepted_too_short;  // cuts before the end of the last tensor's data that loaded
};

// The end of the last tensor's data in `file`'s mapping (tensors copied out of the mapping do not count).
size_t tensor_data_end(const ModelFile& file) {
  REQUIRE(file.mapping != nullptr);
  const uint8_t* begin = file.mapping->data();
  size_t end = 0;
  for (const auto& [name, tensor] : file.tensors) {
    const auto* data = static_cast<const uint8_t*>(tensor.data);
    if (data >= begin && data < begin + file.mapping->size()) end = std::max(end, size_t(data - begin) + tensor.n_bytes);
  }
  REQUIRE(end > 0);
  return end;
}

// Loads `path` with `load`; anything but success or infer::Error fails the test. True if it loaded.
bool load_or_error(const std::function<void(const std::string&)>& load, const std::string& path, Outcome& outcome,
                   const std::string& variant) {
  try {
    load(path);
    ++outcome.loaded;
    return true;
  } catch (const infer::Error& error) {
    ++outcome.rejected;
    // Every message names the file it is about (or the directory holding it).
    if (std::string(error.what()).find(fs::path(path).parent_path().filename().string()) == std::string::npos) {
      FAIL_CHECK(variant << ": message does not name the file: " << error.what());
    }
  } catch (const std::exception& error) {
    FAIL_CHECK(variant << ": threw a non-infer::Error exception: " << error.what());
  } catch (...) {
    FAIL_CHECK(variant << ": threw a non-exception");
  }
  return false;
}

// Truncates `original` at every length below its size (every byte of the header and of the data), then
// applies `n_corruptions` seeded corruptions (1-4 bytes each, mostly in the header), writing each
// variant to `target` and loading `load_path`. Every cut before `data_end` (the end of the last tensor's
// data) must be rejected: the cuts that loaded anyway are in accepted_too_short (check_truncations).
Outcome fuzz_file(const std::vector<uint8_t>& original, size_t header_end, size_t data_end, const fs::path& target,
                  const std::string& load_path, const std::function<void(const std::string&)>& load, uint64_t seed,
                  int n_corruptions) {
  Outcome outcome;
  header_end = std::min(header_end, original.size());
  REQUIRE(data_end <= original.size());
  // Longest cut first: the file is written once and then only shortened (a cheap truncate per cut).
  infer::test::write_bytes(target, original);
  for (size_t length = original.size(); length-- > 0;) {
    fs::resize_file(target, length);
    ++outcome.truncations;
    if (load_or_error(load, load_path, outcome, "truncated to " + std::to_string(length)) && length < data_end)
      outcome.accepted_too_short.insert(outcome.accepted_too_short.begin(), length);
  }
  std::mt19937_64 rng(seed);
  for (int i = 0; i < n_corruptions; ++i) {
    std::vector<uint8_t> damaged = original;
    const bool in_header = rng() % 5 != 0;
    const size_t offset = in_header ? rng() % header_end : rng() % damaged.size();
    const size_t count = 1 + rng() % 4;
    std::string description = "corrupted at " + std::to_string(offset);
    for (size_t k = 0; k < count && offset + k < damaged.size(); ++k) {
      // Half the time an extreme byte (0x00 / 0xff / 0x7f) to build huge or zero counts.
      const uint8_t extremes[3] = {0x00, 0xff, 0x7f};
      damaged[offset + k] = rng() % 2 ? extremes[rng() % 3] : uint8_t(rng());
    }
    infer::test::write_bytes(target, damaged);
    load_or_error(load, load_path, outcome, description);
  }
  return outcome;
}

// Every cut before the end of the last tensor's data was rejected (naming the first few that were not).
void check_truncations(const Outcome& outcome, size_t data_end, const std::string& what) {
  std::string lengths;
  for (size_t i = 0; i < outcome.accepted_too_short.size() && i < 5; ++i)
    lengths += (i == 0 ? "" : ", ") + std::to_string(outcome.accepted_too_short[i]);
  CHECK_MESSAGE(outcome.accepted_too_short.empty(),
                what << ": " << outcome.accepted_too_short.size() << " cuts before the end of the tensor data (byte "
                     << data_end << ") loaded without an error, e.g. at lengths " << lengths);
  if (outcome.accepted_too_short.empty())
    MESSAGE(what << ": all " << data_end << " cuts before the end of the tensor data rejected (" << outcome.truncations
                 << " cuts in all)");
}

// ---- locating fields in a GGUF file for targeted damage -----------------------------------------

// Offset just after the GGUF string `text` (u64 length + bytes).
size_t find_gguf_string(const std::vector<uint8_t>& bytes, const std::string& text) {
  std::vector<uint8_t> needle(8);
  const uint64_t length = text.size();
  std::memcpy(needle.data(), &length, 8);
  needle.insert(needle.end(), text.begin(), text.end());
  const auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  REQUIRE(it != bytes.end());
  return size_t(it - bytes.begin()) + needle.size();
}
template <typename T>
void put(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}
template <typename T>
T get(const std::vector<uint8_t>& bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}
struct TensorInfoFields {
  size_t n_dims, dims, type, offset;
};
TensorInfoFields tensor_info_fields(const std::vector<uint8_t>& bytes, const std::string& name) {
  const size_t n_dims = find_gguf_string(bytes, name);
  const uint32_t count = get<uint32_t>(bytes, n_dims);
  return {n_dims, n_dims + 4, n_dims + 4 + 8 * count, n_dims + 8 + 8 * count};
}

// Hand-built GGUF header bytes: magic, version 3, the two counts, then `rest`.
std::vector<uint8_t> gguf_header(uint64_t tensor_count, uint64_t metadata_count, const std::vector<uint8_t>& rest) {
  std::vector<uint8_t> bytes(24 + rest.size());
  std::memcpy(bytes.data(), "GGUF", 4);
  put<uint32_t>(bytes, 4, 3);
  put<uint64_t>(bytes, 8, tensor_count);
  put<uint64_t>(bytes, 16, metadata_count);
  if (!rest.empty()) std::memcpy(bytes.data() + 24, rest.data(), rest.size());
  return bytes;
}

}  // namespace

// ================================================================================================
// Truncation and corruption sweeps
// ================================================================================================

TEST_CASE("loader fuzz: gguf truncations and corruptions never crash") {
  const auto dir = infer::test::scratch_dir("fuzz_gguf");
  const std::string source = (dir / "source.gguf").string();
  for (DType dtype : {DType::F16, DType::Q4_1}) {
    CAPTURE(dtype_name(dtype));
    write_synthetic_gguf(source, fuzz_config(), 1, dtype);
    const auto original = infer::test::read_bytes(source);
    const auto mapping = MappedFile::open(source);
    const size_t header_end = parse_gguf(*mapping).data_offset;
    const size_t data_end = tensor_data_end(load_gguf(source));
    const fs::path target = dir / "damaged.gguf";
    const Outcome outcome = fuzz_file(original, header_end, data_end, target, target.string(),
                                      [](const std::string& p) { load_gguf(p); }, 31, 2000);
    check_truncations(outcome, data_end, std::string("gguf ") + std::string(dtype_name(dtype)));
    MESSAGE("gguf " << dtype_name(dtype) << ": header " << header_end << " bytes, " << outcome.loaded << " variants loaded, "
                    << outcome.rejected << " rejected");
    CHECK(outcome.rejected > 0);
    CHECK(outcome.loaded > 0);  // corruptions inside tensor data leave a loadable file
  }
}

TEST_CASE("loader fuzz: safetensors truncations and corruptions never crash") {
  const auto dir = infer::test::scratch_dir("fuzz_safetensors");
  write_synthetic_safetensors(dir.string(), fuzz_config(), 2, DType::BF16);
  const fs::path file = dir / "model.safetensors";
  const auto original = infer::test::read_bytes(file);
  const size_t header_end = 8 + size_t(get<uint64_t>(original, 0));
  const size_t data_end = tensor_data_end(load_model_file(dir.string()));
  const Outcome outcome = fuzz_file(original, header_end, data_end, file, dir.string(),
                                    [](const std::string& p) { load_model_file(p); }, 32, 2000);
  check_truncations(outcome, data_end, "safetensors");
  MESSAGE("safetensors: header " << header_end << " bytes, " << outcome.loaded << " loaded, " << outcome.rejected << " rejected");
  CHECK(outcome.rejected > 0);
  infer::test::write_bytes(file, original);

  // config.json is untrusted too.
  const fs::path config = dir / "config.json";
  const auto config_bytes = infer::test::read_bytes(config);
  // (data_end 0: a shorter config.json may still be valid JSON with every key, e.g. cut after the last '}')
  const Outcome config_outcome = fuzz_file(config_bytes, config_bytes.size(), 0, config, dir.string(),
                                           [](const std::string& p) { load_safetensors(p); }, 33, 500);
  CHECK(config_outcome.rejected > 0);
}

TEST_CASE("loader fuzz: llama2.c v0 and v1 truncations and corruptions never crash") {
  // Depends on load_llama2c (llama2c_loader.cpp).
  const auto dir = infer::test::scratch_dir("fuzz_llama2c");
  for (int version : {0, 1}) {
    CAPTURE(version);
    const std::string source = (dir / ("source_v" + std::to_string(version) + ".bin")).string();
    write_synthetic_llama2c(source, fuzz_config(), 3, version);
    const auto original = infer::test::read_bytes(source);
    const size_t header_end = version == 0 ? 28 : 256;
    const size_t data_end = tensor_data_end(load_model_file(source));
    const fs::path target = dir / "damaged.bin";
    const Outcome outcome = fuzz_file(original, header_end, data_end, target, target.string(),
                                      [](const std::string& p) { load_model_file(p); }, 40 + version, 600);
    check_truncations(outcome, data_end, "llama2c v" + std::to_string(version));
    MESSAGE("llama2c v" << version << ": " << outcome.loaded << " loaded, " << outcome.rejected << " rejected");
    CHECK(outcome.rejected > 0);
  }
}

// ================================================================================================
// Specific damage, specific messages
// ================================================================================================

TEST_CASE("loader fuzz: gguf damage gives the expected message") {
  const auto dir = infer::test::scratch_dir("fuzz_gguf_messages");
  const std::string source = (dir / "model.gguf").string();
  write_synthetic_gguf(source, fuzz_config(), 1, DType::F32);
  const auto original = infer::test::read_bytes(source);
  const std::string path = (dir / "damaged.gguf").string();
  auto expect = [&](const std::vector<uint8_t>& bytes, const std::string& message) {
    infer::test::write_bytes(path, bytes);
    CHECK_THROWS_WITH_AS(load_gguf(path), doctest::Contains(message.c_str()), infer::Error);
  };
  CHECK(load_gguf(source).config.dim == 32);  // the undamaged file loads

  SUBCASE("wrong magic") {
    auto bytes = original;
    bytes[0] = 'X';
    expect(bytes, path + ": bad magic");
  }
  SUBCASE("unknown dtype id") {
    auto bytes = original;
    put<uint32_t>(bytes, tensor_info_fields(bytes, "blk.0.attn_q.weight").type, 99);
    expect(bytes, path + ": tensor 'blk.0.attn_q.weight' has unknown dtype id 99");
  }
  SUBCASE("tensor offset past the end of the file") {
    auto bytes = original;
    put<uint64_t>(bytes, tensor_info_fields(bytes, "output.weight").offset, uint64_t(1) << 40);
    expect(bytes, "tensor 'output.weight' data [1099511627776, ");
  }
  SUBCASE("file cut inside the last tensor") {
    auto bytes = original;
    bytes.resize(bytes.size() - 10);
    expect(bytes, "past the end of the file's data section");
  }
  SUBCASE("tensor offset not aligned") {
    auto bytes = original;
    const size_t field = tensor_info_fields(bytes, "output.weight").offset;
    put<uint64_t>(bytes, field, get<uint64_t>(bytes, field) + 4);
    expect(bytes, "tensor 'output.weight' data offset");
  }
  SUBCASE("too many dimensions") {
    auto bytes = original;
    put<uint32_t>(bytes, tensor_info_fields(bytes, "token_embd.weight").n_dims, 5);
    expect(bytes, "tensor 'token_embd.weight' has 5 dimensions");
  }
  SUBCASE("shape inconsistent with the config") {
    auto bytes = original;
    const size_t value = find_gguf_string(bytes, "llama.attention.head_count_kv") + 4;  // after the u32 type
    REQUIRE(get<uint32_t>(bytes, value) == 1);
    put<uint32_t>(bytes, value, 2);
    expect(bytes, "tensor 'blk.0.attn_k.weight' has shape (16, 32) but the config implies (32, 32)");
  }
  SUBCASE("unsupported architecture") {
    GgufWriter writer(path);
    writer.set("general.architecture", GgufValue::make_string("gpt2"));
    writer.write_header();
    writer.finish();
    CHECK_THROWS_WITH_AS(load_gguf(path), doctest::Contains("unsupported architecture 'gpt2'"), infer::Error);
  }
  SUBCASE("huge string length") {
    std::vector<uint8_t> rest(64);  // enough bytes that one key/value pair is plausible
    put<uint64_t>(rest, 0, uint64_t(1) << 62);  // key length: 4 EiB
    expect(gguf_header(0, 1, rest), "metadata key length 4611686018427387904");
  }
  SUBCASE("huge array count") {
    std::vector<uint8_t> rest(8 + 1 + 4 + 4 + 8);
    put<uint64_t>(rest, 0, 1);
    rest[8] = 'k';
    put<uint32_t>(rest, 9, uint32_t(GgufType::ARRAY));
    put<uint32_t>(rest, 13, uint32_t(GgufType::U32));
    put<uint64_t>(rest, 17, uint64_t(1) << 60);
    expect(gguf_header(0, 1, rest), "array count of metadata 'k' = 1152921504606846976");
  }
  SUBCASE("huge tensor and metadata counts") {
    expect(gguf_header(uint64_t(1) << 50, 0, {}), "tensor_count = 1125899906842624");
    expect(gguf_header(0, ~uint64_t(0), {}), "metadata_kv_count = 18446744073709551615");
  }
}

TEST_CASE("loader fuzz: safetensors damage gives the expected message") {
  const auto dir = infer::test::scratch_dir("fuzz_safetensors_messages");
  write_synthetic_safetensors(dir.string(), fuzz_config(), 2, DType::F16);
  const fs::path file = dir / "model.safetensors";
  auto bytes = infer::test::read_bytes(file);
  put<uint64_t>(bytes, 0, uint64_t(1) << 40);
  infer::test::write_bytes(file, bytes);
  CHECK_THROWS_WITH_AS(load_safetensors(dir.string()), doctest::Contains("header length 1099511627776 is impossible"), infer::Error);
  infer::test::write_bytes(file, bytes.data(), 5);
  CHECK_THROWS_WITH_AS(load_safetensors(dir.string()), doctest::Contains("model.safetensors: truncated"), infer::Error);
}
