//! The stripe masks against the tutorial's numpy construction, on 8x8.
//!
//! Expected arrays worked out by hand from `single_stripes`, `double_stripes` and
//! `link_active_stripes` in reference/torch_reference.py: `m[:, 0::4] = 1` marks
//! columns 0 and 4 (rows for mu = 1), `np.roll(m, off, axis=1 - mu)` moves them to
//! `off` and `off + 4`; double stripes add columns 1 and 5 before the roll; the
//! frozen mask is `double_stripes(off + 1)`. (Cross-checked once by running the
//! tutorial's functions under numpy 2.4: identical arrays.)

use latflow_flow::u1::masks::{double_stripes, link_active_stripes, single_stripes, PlaqMasks};
use latflow_flow::u1::U1FlowConfig;
use latflow_tensor::Tensor;
use rand::SeedableRng;

/// Parses 8 rows of '0'/'1' into an 8x8 f64 array (row = x, column = y).
fn grid(rows: [&str; 8]) -> Vec<f64> {
    rows.iter().flat_map(|r| r.chars().map(|c| if c == '1' { 1.0 } else { 0.0 })).collect()
}

fn assert_mask(got: &Tensor<f64>, want: &[f64], what: &str) {
    assert_eq!(got.data(), want, "{what}: got {:?}", got.data());
}

#[test]
fn mu0_off1_stripes_run_along_columns() {
    // single_stripes((8,8), 0, 1): columns 1, 5 in every row.
    let active = grid(["01000100"; 8]);
    // double_stripes((8,8), 0, 2): columns {0,1,4,5} + 2 = {2,3,6,7}.
    let frozen = grid(["00110011"; 8]);
    // passive = 1 - frozen - active: columns 0, 4.
    let passive = grid(["10001000"; 8]);
    let m = PlaqMasks::<f64>::new(8, 8, 0, 1);
    assert_mask(&m.active, &active, "active mu=0 off=1");
    assert_mask(&m.frozen, &frozen, "frozen mu=0 off=1");
    assert_mask(&m.passive, &passive, "passive mu=0 off=1");
    assert_mask(&single_stripes(8, 8, 0, 1), &active, "single_stripes");
    assert_mask(&double_stripes(8, 8, 0, 2), &frozen, "double_stripes");
    // link_active_stripes((2,8,8), 0, 1): m[0, :, 0::4] = 1 rolled along axis 2.
    let links = link_active_stripes::<f64>(8, 8, 0, 1);
    assert_eq!(links.shape(), &[2, 8, 8]);
    assert_mask(&links, &[active.clone(), vec![0.0; 64]].concat(), "links mu=0 off=1");
}

#[test]
fn mu1_off3_stripes_run_along_rows_and_wrap() {
    // single_stripes((8,8), 1, 3): m[0::4] = 1 -> rows 0, 4, rolled by 3 along axis 0 -> rows 3, 7.
    let active = grid(["00000000", "00000000", "00000000", "11111111", "00000000", "00000000", "00000000", "11111111"]);
    // double_stripes((8,8), 1, 4): rows {0,1,4,5} rolled by 4 -> {4,5,0,1}.
    let frozen = grid(["11111111", "11111111", "00000000", "00000000", "11111111", "11111111", "00000000", "00000000"]);
    let passive =
        grid(["00000000", "00000000", "11111111", "00000000", "00000000", "00000000", "11111111", "00000000"]);
    let m = PlaqMasks::<f64>::new(8, 8, 1, 3);
    assert_mask(&m.active, &active, "active mu=1 off=3");
    assert_mask(&m.frozen, &frozen, "frozen mu=1 off=3");
    assert_mask(&m.passive, &passive, "passive mu=1 off=3");
    // link_active_stripes((2,8,8), 1, 3): m[1, 0::4] = 1 rolled along axis 1 -> plane 1, rows 3, 7.
    let links = link_active_stripes::<f64>(8, 8, 1, 3);
    assert_mask(&links, &[vec![0.0; 64], active].concat(), "links mu=1 off=3");
}

#[test]
fn mu0_off3_frozen_wraps_around() {
    // active columns 3, 7; frozen {0,1,4,5} rolled by 4 -> {4,5,0,1}; passive 2, 6.
    let m = PlaqMasks::<f64>::new(8, 8, 0, 3);
    assert_mask(&m.active, &grid(["00010001"; 8]), "active mu=0 off=3");
    assert_mask(&m.frozen, &grid(["11001100"; 8]), "frozen mu=0 off=3");
    assert_mask(&m.passive, &grid(["00100010"; 8]), "passive mu=0 off=3");
}

#[test]
fn masks_partition_the_lattice_and_the_updated_links_touch_only_active_and_passive() {
    for mu in 0..2 {
        for off in 0..4 {
            let m = PlaqMasks::<f64>::new(8, 8, mu, off);
            for i in 0..64 {
                assert_eq!(m.frozen.data()[i] + m.active.data()[i] + m.passive.data()[i], 1.0);
            }
            // theta_0(x, y) enters P(x, y) and P(x, y - 1); theta_1(x, y) enters P(x, y) and P(x - 1, y).
            let links = link_active_stripes::<f64>(8, 8, mu, off);
            for x in 0..8 {
                for y in 0..8 {
                    if links.data()[mu * 64 + x * 8 + y] == 1.0 {
                        assert_eq!(m.active.data()[x * 8 + y], 1.0);
                        let (xo, yo) = if mu == 0 { (x, (y + 7) % 8) } else { ((x + 7) % 8, y) };
                        assert_eq!(m.passive.data()[xo * 8 + yo], 1.0, "mu={mu} off={off} ({x},{y})");
                    }
                }
            }
        }
    }
}

#[test]
fn layer_i_has_mu_i_mod_2_and_offset_i_div_2_mod_4() {
    let flow = U1FlowConfig::default().build::<f64>(&mut rand::rngs::StdRng::seed_from_u64(0));
    for (i, l) in flow.layers().iter().enumerate() {
        let l = l.as_any().downcast_ref::<latflow_flow::u1::GaugeEquivCoupling<f64>>().expect("gauge coupling");
        assert_eq!((l.mu, l.off), (i % 2, (i / 2) % 4), "layer {i}");
        assert_eq!(l.active_mask(), &link_active_stripes(8, 8, i % 2, (i / 2) % 4));
        let names: Vec<String> = l.named_buffers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["active_mask", "plaq_coupling.frozen", "plaq_coupling.active", "plaq_coupling.passive"]);
    }
}

#[test]
fn gather_and_scatter_pick_the_single_stripes() {
    use latflow_flow::u1::masks::{gather_stripe, scatter_stripe};
    use latflow_tensor::Var;
    let x = Tensor::from_vec(&[2, 8, 8], (0..128).map(|v| v as f64).collect());
    for mu in 0..2 {
        for off in 0..4 {
            let m = single_stripes::<f64>(8, 8, mu, off);
            let g = gather_stripe(&Var::constant(x.clone()), mu, off);
            let want: Vec<f64> = (0..128).filter(|i| m.data()[i % 64] == 1.0).map(|i| i as f64).collect();
            assert_eq!(g.value().data(), &want[..], "mu={mu} off={off}");
            let vals = Var::constant(g.value().map(|v| -v));
            let s = scatter_stripe(&Var::constant(x.clone()), &vals, mu, off);
            for i in 0..128 {
                let want = if m.data()[i % 64] == 1.0 { -(i as f64) } else { i as f64 };
                assert_eq!(s.value().data()[i], want);
            }
        }
    }
}
