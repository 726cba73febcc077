// CPU check harness: runs the CUDA kernels of lif_kernels.cu on the host (g++),
// so CI without a GPU checks the kernels' arithmetic against the torch backend.
//
// A launch runs the blocks one after another; the threads of a block are
// fibers (ucontext) switched round-robin, and __syncthreads() yields to the
// next fiber, so one round runs every thread up to its next barrier: the
// barrier semantics of a block, deterministically, on one OS thread.
// __shared__ variables become statics (one block runs at a time); atomics and
// fences are plain, since nothing runs concurrently. Not for speed.
#include <math.h>
#include <string.h>
#include <ucontext.h>

#include <cstddef>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct sj_host_dim3 {
  unsigned x, y, z;
};
static sj_host_dim3 threadIdx, blockIdx, blockDim, gridDim;

inline void __threadfence() {}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p += v;
  return old;
}

namespace sj_shim {
static ucontext_t scheduler;
static std::vector<ucontext_t> fibers;
static std::vector<std::vector<char>> stacks;
static std::vector<char> finished;
static void (*body)(void**) = nullptr;
static void** body_args = nullptr;
static const size_t stack_bytes = 1 << 16;

static void fiber_main() {
  body(body_args);
  finished[threadIdx.x] = 1;
}  // returns to the scheduler through uc_link

template <class... A, size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<A*>(args[I])...);
}

// launch kernel<<<grid, block>>>(args): args[i] points at the value of parameter i
template <class... A>
void launch(void (*kernel)(A...), unsigned grid, unsigned block, void** args) {
  static void (*current)(A...) = nullptr;
  current = kernel;
  body = [](void** a) { call(current, a, std::index_sequence_for<A...>{}); };
  body_args = args;
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  fibers.resize(block);
  finished.assign(block, 0);
  while (stacks.size() < block) stacks.emplace_back(stack_bytes);
  for (unsigned b = 0; b < grid; ++b) {
    blockIdx = {b, 0, 0};
    for (unsigned i = 0; i < block; ++i) {
      getcontext(&fibers[i]);
      fibers[i].uc_stack.ss_sp = stacks[i].data();
      fibers[i].uc_stack.ss_size = stack_bytes;
      fibers[i].uc_link = &scheduler;
      makecontext(&fibers[i], fiber_main, 0);
      finished[i] = 0;
    }
    for (unsigned alive = block; alive > 0;) {
      alive = 0;
      for (unsigned i = 0; i < block; ++i) {
        if (finished[i]) continue;
        threadIdx = {i, 0, 0};
        swapcontext(&scheduler, &fibers[i]);
        alive += !finished[i];
      }
    }
  }
}
}  // namespace sj_shim

inline void __syncthreads() { swapcontext(&sj_shim::fibers[threadIdx.x], &sj_shim::scheduler); }
