// mapped_file.cpp: read-only mmap of a model file and the bounds-checked ByteReader.
//
// Loaders never copy weights: tensors point straight into the mapping, so "loading" a 2 GB model
// costs page-table entries, and the OS pages weights in on first touch.
#include "infer/core/mapped_file.h"

#include "infer/core/error.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace infer {

// ================================================================================================
// MappedFile
// ================================================================================================

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int saved = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(saved));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = size_t(info.st_size);
  if (file->size_ > 0) {  // mmap of length 0 is an error, and an empty file needs no mapping
    void* address = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (address == MAP_FAILED) {
      const int saved = errno;
      ::close(fd);
      fail("{}: cannot mmap {} bytes: {}", path, file->size_, std::strerror(saved));
    }
    file->data_ = static_cast<const uint8_t*>(address);
  }
  ::close(fd);  // the mapping stays valid after the descriptor is closed
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// ================================================================================================
// ByteReader
// ================================================================================================

void ByteReader::seek(size_t offset) {
  if (offset > size_) fail("{}: seek to offset {} past the end ({} bytes)", what_, offset, size_);
  offset_ = offset;
}

void ByteReader::skip(size_t bytes) {
  if (bytes > remaining()) {
    fail("{}: skipping {} bytes at offset {} runs past the end ({} bytes)", what_, bytes, offset_, size_);
  }
  offset_ += bytes;
}

const uint8_t* ByteReader::take(size_t bytes, std::string_view field) {
  if (bytes > remaining()) {
    fail("{}: truncated: {} needs {} bytes at offset {} but only {} remain", what_, field, bytes, offset_,
         remaining());
  }
  const uint8_t* pointer = data_ + offset_;
  offset_ += bytes;
  return pointer;
}

}  // namespace infer
