//! Timing on the device with CUDA events, and the two ceilings the benches compare
//! against: the FP32 FMA rate of a tight register-only loop and the bandwidth of a large
//! device-to-device copy (bytes read + bytes written).

use crate::ops::launch;
use crate::{check, gpu, DeviceBuf};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// Median milliseconds of `f` over `reps` runs, each timed with events on the stream
/// (after two warm-up runs).
pub fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let g = gpu().unwrap_or_else(|e| panic!("{e}"));
    let ev = || check(g.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)), "event");
    f();
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let (a, b) = (ev(), ev());
            check(a.record(g.stream()), "event record");
            f();
            check(b.record(g.stream()), "event record");
            check(a.elapsed_ms(&b), "event elapsed") as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// The FP32 rate of `fma_peak` (GFLOP/s, 2 per FMA) over the whole GPU.
pub fn fma_peak_gflops() -> f64 {
    let g = gpu().unwrap_or_else(|e| panic!("{e}"));
    let sms = check(
        g.context().attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
        "attribute",
    ) as u32;
    let (blocks, threads, iters) = (sms * 8, 256u32, 4096i32);
    let mut out = DeviceBuf::uninit((blocks * threads) as usize);
    let (a, b) = (0.999f32, 1e-3f32);
    let ms = median_ms(9, || {
        let mut l = g.stream().launch_builder(g.func("fma_peak"));
        l.arg(&mut out.slice).arg(&iters).arg(&a).arg(&b);
        launch(
            l,
            LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 },
            "fma_peak",
        );
    });
    let flops = blocks as f64 * threads as f64 * iters as f64 * 8.0 * 2.0;
    flops / (ms * 1e-3) / 1e9
}

/// Device-to-device copy bandwidth (GB/s, read + write) over `bytes` per buffer.
pub fn copy_gbps(bytes: usize) -> f64 {
    let g = gpu().unwrap_or_else(|e| panic!("{e}"));
    let n = bytes / 4 / 4 * 4;
    let x = DeviceBuf::zeros(n);
    let mut y = DeviceBuf::uninit(n);
    let n4 = (n / 4) as i64;
    let ms = median_ms(9, || {
        let mut l = g.stream().launch_builder(g.func("copy_f32"));
        l.arg(&x.slice).arg(&mut y.slice).arg(&n4);
        launch(l, LaunchConfig { grid_dim: (4096, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }, "copy_f32");
    });
    2.0 * (n * 4) as f64 / (ms * 1e-3) / 1e9
}
