use latflow_physics::lattice::*;

#[test]
fn neighbours_are_inverse_and_periodic() {
    for shape in [vec![5], vec![4, 3], vec![2, 3, 4], vec![1, 6]] {
        let lat = Lattice::new(&shape);
        for n in 0..lat.volume() {
            assert_eq!(lat.index(&lat.coords(n)), n);
            for mu in 0..lat.nd() {
                assert_eq!(lat.bwd(lat.fwd(n, mu), mu), n);
                assert_eq!(lat.fwd(n, mu), lat.shift(n, mu, 1));
                assert_eq!(lat.bwd(n, mu), lat.shift(n, mu, -1));
                assert_eq!(lat.shift(n, mu, shape[mu] as isize), n);
                let mut c = lat.coords(n);
                c[mu] = (c[mu] + 1) % shape[mu];
                assert_eq!(lat.index(&c), lat.fwd(n, mu));
            }
        }
    }
}
