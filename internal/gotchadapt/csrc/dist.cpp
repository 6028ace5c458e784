// prism's c10d shim: libtorch's own rendezvous (TCPStore) and collectives
// (ProcessGroupGloo on CPU, ProcessGroupNCCL on CUDA) behind a C interface
// for cgo. Tensors are gotch's handles (torch::Tensor*). Every C++
// exception becomes an error string the caller frees; nothing aborts.
//
// The adapter prepends the configuration: PRISM_DIST_GLOO (with
// USE_C10D_GLOO) and, when the libtorch has CUDA and NCCL headers,
// PRISM_DIST_NCCL (with USE_C10D_NCCL); with neither, every function
// returns PRISM_DIST_UNAVAILABLE, the reason the others did not build.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {
char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p != nullptr) {
    std::memcpy(p, s.c_str(), s.size() + 1);
  }
  return p;
}
}  // namespace

#if defined(PRISM_DIST_GLOO) || defined(PRISM_DIST_NCCL)

#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#ifdef PRISM_DIST_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef PRISM_DIST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <memory>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
#ifdef PRISM_DIST_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef PRISM_DIST_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  template <typename F>
  void run(F f) {
#ifdef PRISM_DIST_NCCL
    if (nccl) {
      f(*nccl);
      return;
    }
#endif
#ifdef PRISM_DIST_GLOO
    if (gloo) {
      f(*gloo);
      return;
    }
#endif
    throw std::runtime_error("process group not initialised");
  }
};

// libtorch's messages carry a C++ backtrace after the first line.
char *message(const std::exception &e) {
  std::string m = e.what();
  auto nl = m.find('\n');
  if (nl != std::string::npos) {
    m = m.substr(0, nl);
  }
  return dup(m);
}

// libtorch 2.2 added TCPStoreOptions::useLibUV and 2.4 made it the
// default; a libtorch built without libuv (Debian's) then refuses every
// store. The overloads set it only where the member exists, so the shim
// compiles against 1.13 too.
template <typename O>
auto set_libuv(O &o, bool v, int) -> decltype(o.useLibUV = v, true) {
  o.useLibUV = v;
  return true;
}
template <typename O>
bool set_libuv(O &, bool, long) {
  return false;
}

// open_store makes the rendezvous store with libtorch's defaults and, when
// they ask for libuv that this libtorch lacks, again with the classic
// TCPStore server.
c10::intrusive_ptr<c10d::TCPStore> open_store(const std::string &host, c10d::TCPStoreOptions opts) {
  try {
    return c10::make_intrusive<c10d::TCPStore>(host, opts);
  } catch (const std::exception &e) {
    if (std::string(e.what()).find("libuv") == std::string::npos || !set_libuv(opts, false, 0)) {
      throw;
    }
  }
  return c10::make_intrusive<c10d::TCPStore>(host, opts);
}

bool loopback(const std::string &host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::vector<at::Tensor> tensors(void **ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) {
    out.push_back(*static_cast<torch::Tensor *>(ts[i]));
  }
  return out;
}

// flat packs tensors into one contiguous buffer (one collective instead of
// one per tensor); unflat copies the result back.
at::Tensor flat(const std::vector<at::Tensor> &ts) {
  if (ts.size() == 1 && ts[0].is_contiguous()) {
    return ts[0].view({-1});
  }
  std::vector<at::Tensor> views;
  views.reserve(ts.size());
  for (auto &t : ts) {
    views.push_back(t.reshape({-1}));
  }
  return torch::cat(views);
}

void unflat(const at::Tensor &buf, std::vector<at::Tensor> &ts) {
  if (ts.size() == 1 && ts[0].is_contiguous()) {
    return;  // the collective ran in place
  }
  int64_t off = 0;
  for (auto &t : ts) {
    int64_t n = t.numel();
    t.copy_(buf.narrow(0, off, n).view_as(t));
    off += n;
  }
}

}  // namespace

extern "C" const char *prism_dist_backends() {
#if defined(PRISM_DIST_GLOO) && defined(PRISM_DIST_NCCL)
  return "gloo,nccl";
#elif defined(PRISM_DIST_GLOO)
  return "gloo";
#else
  return "nccl";
#endif
}

extern "C" char *prism_dist_init(const char *backend, const char *host, int port, int rank, int world,
                                 int64_t timeout_ms, void **out) {
  try {
    std::string be(backend), h(host);
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0;
    opts.numWorkers = world;
    opts.waitWorkers = true;
    opts.timeout = timeout;
    auto store = open_store(h, opts);
    auto g = std::make_unique<Group>();
    g->store = store;
    if (be == "gloo") {
#ifdef PRISM_DIST_GLOO
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      // Each rank binds its own interface: GLOO_SOCKET_IFNAME names it (as
      // in PyTorch); else loopback for a loopback master, else the address
      // this machine's hostname resolves to.
      const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && *ifname != 0) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (loopback(h)) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(h));
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      g->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
#else
      return dup("this libtorch build has no Gloo process group");
#endif
    } else if (be == "nccl") {
#ifdef PRISM_DIST_NCCL
      // Without asynchronous error handling a dead peer hangs NCCL
      // collectives forever instead of failing after the timeout.
      setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
      setenv("NCCL_ASYNC_ERROR_HANDLING", "1", 0);
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      g->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
#else
      return dup("this libtorch build has no NCCL process group (a CPU libtorch, or one built without NCCL)");
#endif
    } else {
      return dup("unknown backend \"" + be + "\" (want gloo or nccl)");
    }
    *out = g.release();
    return nullptr;
  } catch (const std::exception &e) {
    return message(e);
  }
}

extern "C" char *prism_dist_allreduce_sum(void *g, void **ts, int n) {
  try {
    torch::NoGradGuard no_grad;  // parameters are leaves that require grad
    auto in = tensors(ts, n);
    std::vector<at::Tensor> buf{flat(in)};
    static_cast<Group *>(g)->run([&](auto &pg) { pg.allreduce(buf)->wait(); });
    unflat(buf[0], in);
    return nullptr;
  } catch (const std::exception &e) {
    return message(e);
  }
}

extern "C" char *prism_dist_broadcast(void *g, void **ts, int n, int root) {
  try {
    torch::NoGradGuard no_grad;  // parameters are leaves that require grad
    auto in = tensors(ts, n);
    std::vector<at::Tensor> buf{flat(in)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    static_cast<Group *>(g)->run([&](auto &pg) { pg.broadcast(buf, o)->wait(); });
    unflat(buf[0], in);
    return nullptr;
  } catch (const std::exception &e) {
    return message(e);
  }
}

extern "C" char *prism_dist_allgather_f64(void *g, const double *in, int64_t n, double *out, int world) {
  try {
    auto opts = torch::TensorOptions().dtype(torch::kFloat64);
    auto src = torch::from_blob(const_cast<double *>(in), {n}, opts).clone();
    std::vector<at::Tensor> outs;
    for (int i = 0; i < world; i++) {
      outs.push_back(torch::empty({n}, opts));
    }
    std::vector<std::vector<at::Tensor>> outputs{outs};
    std::vector<at::Tensor> inputs{src};
    static_cast<Group *>(g)->run([&](auto &pg) {
#ifdef PRISM_DIST_NCCL
      if constexpr (std::is_same_v<std::decay_t<decltype(pg)>, c10d::ProcessGroupNCCL>) {
        // NCCL gathers device tensors only.
        inputs[0] = inputs[0].to(torch::kCUDA);
        for (auto &t : outputs[0]) {
          t = t.to(torch::kCUDA);
        }
      }
#endif
      pg.allgather(outputs, inputs)->wait();
    });
    for (int i = 0; i < world; i++) {
      auto t = outputs[0][i].to(torch::kCPU).contiguous();
      std::memcpy(out + i * n, t.data_ptr<double>(), n * sizeof(double));
    }
    return nullptr;
  } catch (const std::exception &e) {
    return message(e);
  }
}

extern "C" char *prism_dist_barrier(void *g) {
  try {
    static_cast<Group *>(g)->run([&](auto &pg) { pg.barrier()->wait(); });
    return nullptr;
  } catch (const std::exception &e) {
    return message(e);
  }
}

extern "C" void prism_dist_free(void *g) { delete static_cast<Group *>(g); }

#else  // no process group in this libtorch

#ifndef PRISM_DIST_UNAVAILABLE
#define PRISM_DIST_UNAVAILABLE "this libtorch has no usable c10d process group"
#endif

extern "C" const char *prism_dist_backends() { return ""; }
extern "C" char *prism_dist_init(const char *, const char *, int, int, int, int64_t, void **) {
  return dup(PRISM_DIST_UNAVAILABLE);
}
extern "C" char *prism_dist_allreduce_sum(void *, void **, int) { return dup(PRISM_DIST_UNAVAILABLE); }
extern "C" char *prism_dist_broadcast(void *, void **, int, int) { return dup(PRISM_DIST_UNAVAILABLE); }
extern "C" char *prism_dist_allgather_f64(void *, const double *, int64_t, double *, int) {
  return dup(PRISM_DIST_UNAVAILABLE);
}
extern "C" char *prism_dist_barrier(void *) { return dup(PRISM_DIST_UNAVAILABLE); }
extern "C" void prism_dist_free(void *) {}

#endif
