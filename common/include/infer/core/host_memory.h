// host_memory.h: host buffers for the arrays the kernels stream (weights, KV blocks, the bandwidth probe).
//
// 64-byte aligned (one cache line, one AVX-512 load). From 2 MiB up the buffer is aligned to 2 MiB and
// advised as a transparent huge page region (madvise MADV_HUGEPAGE; Linux's default THP mode is
// "madvise", so nothing is huge unless asked). With 4 KiB pages a decode step that streams 538 MB of
// f32 weights crosses 130,000 page boundaries: the hardware prefetcher stops at each one and every page
// costs a TLB walk. On the 2-core EPYC VM (2026-11-30, runs alternated 3 times) an f32 GEMV (1536 x 576,
// bench_kernels BM_matmul_batch/n:1) took 77-78 us from 4 KiB pages and 71-75 us from huge pages.
// Where the kernel refuses huge pages the advice is ignored and the buffer works the same.
#pragma once

#include <cstddef>

namespace infer {

// Zero-filled, aligned as above; throws infer::Error when the allocation fails. Free with free_host.
void* allocate_host(size_t bytes);
void free_host(void* pointer);

// True when `bytes` would be advised as huge pages (>= 2 MiB).
bool host_uses_huge_pages(size_t bytes);

}  // namespace infer
