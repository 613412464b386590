// memory_budget.cpp: available host memory, byte formatting, and the up-front fit check.
#include "infer/core/memory_budget.h"

#include "infer/core/error.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace infer {

uint64_t available_host_memory() {
  // MemAvailable (Linux >= 3.14) estimates what can be allocated without swapping, page cache
  // included; MemFree alone would call a machine with a warm cache "full".
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    unsigned long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kib) == 1) return uint64_t(kib) * 1024;
  }
  const long pages = ::sysconf(_SC_AVPHYS_PAGES), page_size = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) return uint64_t(pages) * uint64_t(page_size);
  return UINT64_MAX;  // unknown: do not refuse on a guess
}

std::string format_bytes(uint64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = double(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 6) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.{}f} {}", value, value < 10 ? 2 : 1, kUnits[unit]);
}

void check_fits_in_memory(std::string_view what, uint64_t needed, uint64_t available, std::string_view where) {
  if (needed <= available) return;
  fail("{} needs {} ({} bytes) but only {} ({} bytes) of {} memory is available", what, format_bytes(needed), needed,
       format_bytes(available), available, where);
}

}  // namespace infer
