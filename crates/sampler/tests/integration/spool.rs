use latflow_sampler::spool::*;

/// A spilled spool reads back what was written, twice, and removes its file.
#[test]
fn spills_to_disk_and_reads_back_in_order() {
    let mut s = Spool::with_memory_limit(3, 8 * 3 * 10);
    for i in 0..100_000 {
        let v = i as f64;
        s.push(&[v, -v, v * 0.5]).unwrap();
    }
    assert!(s.on_disk());
    for _ in 0..2 {
        let mut n = 0;
        s.scan(&mut |i, row| {
            assert_eq!(row, [i as f64, -(i as f64), i as f64 * 0.5]);
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 100_000);
    }
    s.push(&[1.0, 2.0, 3.0]).unwrap();
    let mut last = vec![];
    s.scan(&mut |_, row| last = row.to_vec()).unwrap();
    assert_eq!(last, [1.0, 2.0, 3.0]);
    let path = s.scratch_path().unwrap().to_path_buf();
    drop(s);
    assert!(!path.exists(), "the scratch file is removed");
}
