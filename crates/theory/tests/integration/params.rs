//! Parameters: flags, checkpoint metadata, and the errors that name them.
use latflow_theory::{Group, Param, Params};
use std::collections::BTreeMap;

const PS: [Param; 3] = [
    Param::new("L", "8", "lattice", Group::Lattice),
    Param::new("mix", "2", "components", Group::Flow).stored_as("n_mix"),
    Param::new("nd", "2", "dimensions", Group::HmcOnly),
];

#[test]
fn flags_take_defaults_and_errors_name_the_flag() {
    let given = BTreeMap::from([("mix".to_string(), "0".to_string())]);
    let p = Params::from_flags(&PS, &given);
    assert_eq!(p.positive("L").unwrap(), 8);
    assert_eq!(p.positive("n_mix").unwrap_err(), "--mix must be positive, got 0");
    let mut q = p.clone();
    q.set("L", "x");
    assert_eq!(q.positive("L").unwrap_err(), "--L: cannot parse \"x\"");
    q.set("L", "4,0");
    assert!(q.positive_list("L").unwrap_err().starts_with("--L: expected positive integers"));
}

#[test]
fn metadata_needs_checkpoint_entries_and_errors_name_the_file() {
    let meta = BTreeMap::from([("L".to_string(), "0".to_string())]);
    let e = Params::from_metadata(&PS, &meta, "m.safetensors").unwrap_err();
    assert_eq!(e, "m.safetensors: missing metadata entry \"n_mix\"");
    let meta = BTreeMap::from([("L".to_string(), "0".to_string()), ("n_mix".to_string(), "2".to_string())]);
    let p = Params::from_metadata(&PS, &meta, "m.safetensors").unwrap();
    assert_eq!(p.raw("nd"), Some("2"), "HMC-only parameters take their defaults");
    assert_eq!(p.positive("L").unwrap_err(), "m.safetensors: metadata entry \"L\" = \"0\": must be positive, got 0");
}

/// A parameter added later reads, where a checkpoint lacks it, as what older checkpoints
/// were: its default (`optional`) or another value when the default changed since.
#[test]
fn parameters_added_later_read_as_what_old_checkpoints_were() {
    let ps = [
        Param::new("L", "8", "lattice", Group::Lattice),
        Param::new("coupling", "affine", "kind", Group::Flow).optional(),
        Param::new("prior", "free", "prior", Group::Flow).added_later_as("normal"),
    ];
    let old = BTreeMap::from([("L".to_string(), "8".to_string())]);
    let p = Params::from_metadata(&ps, &old, "old.safetensors").unwrap();
    assert_eq!((p.raw("coupling"), p.raw("prior")), (Some("affine"), Some("normal")));
    let new = BTreeMap::from([("L".into(), "8".into()), ("prior".to_string(), "free:0.5".to_string())]);
    assert_eq!(Params::from_metadata(&ps, &new, "new.safetensors").unwrap().raw("prior"), Some("free:0.5"));
    assert_eq!(Params::from_flags(&ps, &BTreeMap::new()).raw("prior"), Some("free"), "flags take the default");
}
