// jemalloc's options for exemptd, linked only when exemptd links jemalloc, which reads them from
// this symbol as it starts (MALLOC_CONF in the environment still overrides them).
//
// A check-in's memory crosses threads: the I/O thread allocates what the commit thread frees (the
// report's strings) and the other way round (the decision's text). With the default thread
// caches, such allocations kept emptying one cache and overflowing the other, and allocation was
// about 11% of a check-in's instructions. Larger caches, flushed a smaller share at a time, cut
// that to 8.5% (README, Performance). Trimming them less often (tcache_gc_*_bytes) saved a little
// more but put pauses in the latency: the p99 of a paced load of 25,000 check-ins/s doubled.
extern "C" {
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables): the name jemalloc reads
char const* malloc_conf = "tcache_nslots_small_min:512,tcache_nslots_small_max:4096,lg_tcache_nslots_mul:4,"
                          "lg_tcache_flush_small_div:4";
}
