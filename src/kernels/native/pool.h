// The process-wide pool of worker threads (one per process, never two) and a parallel-for.
// The calling thread always takes part, so threads() == 1 means "no workers at all".
#pragma once
#include <functional>

namespace fk {

// fn(task, thread) for task in [0, ntasks); thread in [0, pool_threads()) names the thread that
// runs it (0 = the caller), so a task may index per-thread scratch. Tasks are handed out one at a
// time from a shared counter (dynamic balance). Returns when every task has finished.
// Runs serially in the caller when the pool has one thread, ntasks <= 1, or the pool is already
// busy (a nested call, or a call from a second JS thread).
void parallel_for(int ntasks, const std::function<void(int task, int thread)>& fn);

// Number of threads a parallel_for may use, the caller included (>= 1).
int pool_threads();

// Restarts the pool with n threads in all (n - 1 workers); n is clamped to [1, 256].
void set_pool_threads(int n);

// Default thread count: the number of cores the process may run on.
int default_threads();

}  // namespace fk
