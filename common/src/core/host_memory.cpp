#include "infer/core/host_memory.h"

#include "infer/core/error.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace infer {

namespace {
constexpr size_t kCacheLine = 64;
constexpr size_t kHugePage = size_t(2) << 20;
}  // namespace

bool host_uses_huge_pages(size_t bytes) { return bytes >= kHugePage; }

void* allocate_host(size_t bytes) {
  const size_t alignment = host_uses_huge_pages(bytes) ? kHugePage : kCacheLine;
  if (bytes > SIZE_MAX - alignment) fail("allocate_host: {} bytes is too large", bytes);
  // aligned_alloc wants a size that is a multiple of the alignment.
  const size_t rounded = (std::max<size_t>(bytes, 1) + alignment - 1) / alignment * alignment;
  void* pointer = std::aligned_alloc(alignment, rounded);
  if (pointer == nullptr) fail("allocate_host: out of memory allocating {} bytes", bytes);
#if defined(MADV_HUGEPAGE)
  // Before the first touch below, so the pages are faulted in huge. Advice only: a failure is harmless.
  if (alignment == kHugePage) (void)madvise(pointer, rounded, MADV_HUGEPAGE);
#endif
  std::memset(pointer, 0, rounded);
  return pointer;
}

void free_host(void* pointer) { std::free(pointer); }

}  // namespace infer
