"""Cost of Adam.step's gradient check against the Adam kernel on the MNIST recipe's 6 x 8000 net:
medians of 300 interleaved calls of the kernel alone, opt.step() (check + kernel) and the check.
Run under `flock /tmp/pylgn-bench.lock` on a shared machine."""
import time, numpy as np, pylgn
model = pylgn.Sequential([pylgn.LogicLayer(400 * 3, 8000)] + [pylgn.LogicLayer(8000, 8000) for _ in range(5)]
                         + [pylgn.GroupSum(10, 10.0)], seed=0)
opt = pylgn.Adam(model)
model.grads[:] = np.random.default_rng(0).standard_normal(model.grads.size).astype(np.float32) * 1e-3
k = model.backend.kernels
def kernel_only():
    opt.t += 1
    k.adam_step(model.params, model.grads, opt.m, opt.v, opt.lr, 0.9, 0.999, opt.eps, 0.0, opt.t)
def check_only():
    opt._check_grads()
for f in (kernel_only, opt.step, check_only):
    f()
res = {"kernel": [], "step": [], "check": []}
for _ in range(300):
    for name, f in (("kernel", kernel_only), ("step", opt.step), ("check", check_only)):
        t = time.perf_counter(); f(); res[name].append(time.perf_counter() - t)
med = {n: float(np.median(v)) * 1e6 for n, v in res.items()}
print(f"params {model.params.size}: median us kernel {med['kernel']:.1f}, step (check+kernel) {med['step']:.1f}, check alone {med['check']:.1f}; check/kernel {med['check']/med['kernel']:.2f}")
