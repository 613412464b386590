// mapped_file.h: read-only memory map of a model file, and a bounds-checked cursor over it.
//
// Every loader reads through ByteReader, which throws infer::Error naming the file and the offset
// instead of reading past the end. Tensors point into the mapping; the MappedFile is kept alive by a
// shared_ptr held by whoever holds the tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace infer {

class MappedFile {
 public:
  // Maps `path` read-only. Throws infer::Error if it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Sequential little-endian reader over [data, data + size) that never reads out of bounds.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string what) : data_(data), size_(size), what_(std::move(what)) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return size_ - offset_; }
  void seek(size_t offset);   // throws if offset > size
  void skip(size_t bytes);    // throws if past the end
  const uint8_t* take(size_t bytes, std::string_view field);  // pointer to the next `bytes` bytes

  template <typename T>
  T read(std::string_view field) {
    T value;
    std::memcpy(&value, take(sizeof(T), field), sizeof(T));
    return value;
  }
  const std::string& what() const { return what_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
  std::string what_;  // the file name, used in error messages
};

}  // namespace infer
