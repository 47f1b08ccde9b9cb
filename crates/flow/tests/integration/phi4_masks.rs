//! The phi^4 checkerboard masks against the tutorial's.
use latflow_flow::phi4::masks::checkerboard;

#[test]
fn parities_are_complementary_and_match_the_tutorial() {
    let m0 = checkerboard::<f64>(4, 4, 0);
    let m1 = checkerboard::<f64>(4, 4, 1);
    // torch: c = ones - parity; c[::2, ::2] = parity; c[1::2, 1::2] = parity
    assert_eq!(m0.data()[0], 0.0);
    assert_eq!(m0.data()[1], 1.0);
    assert_eq!(m1.data()[0], 1.0);
    for (a, b) in m0.data().iter().zip(m1.data()) {
        assert_eq!(a + b, 1.0);
    }
}
