// memory_budget.h: refusing work that cannot fit in memory, up front and with the sizes named.
//
// Without these checks a too-large model or context fails late and badly: Linux overcommits, so a
// huge allocation "succeeds" and the process is killed (OOM) part-way through converting weights or
// filling the cache; under AddressSanitizer it aborts. Weights, KVCache and the CPU backend's
// allocate compare what they need with what the backend can give (Backend::available_memory) before
// they allocate, and throw infer::Error naming both sizes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace infer {

// Bytes the OS can give this process without swapping: MemAvailable from /proc/meminfo, else
// sysconf(_SC_AVPHYS_PAGES) * page size (which ignores reclaimable cache, so it is lower).
uint64_t available_host_memory();

// "512 B", "3.2 KiB", "1.50 GiB": sizes as the messages print them.
std::string format_bytes(uint64_t bytes);

// Throws infer::Error "<what> needs <needed> but only <available> of <where> memory is available"
// when needed > available.
void check_fits_in_memory(std::string_view what, uint64_t needed, uint64_t available, std::string_view where);

}  // namespace infer
