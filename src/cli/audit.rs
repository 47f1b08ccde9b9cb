//! `latflow audit [--seed N]`: the gradient audit. Runs the engine's
//! [`latflow_tensor::audit::run_audit`] (f64 central differences against the tape for
//! every op, whole-model compositions, and Adam against PyTorch's formula), then the audits
//! of the fused ops defined outside the engine (`latflow_flow::ops::audit`,
//! `latflow_physics::ops::audit`), prints one row per case and fails (exit status 2) if any
//! case is over the tolerance.

use super::{Args, CliError, CliResult};
use latflow_tensor::audit::{run_audit, AuditCase};

/// Runs the audit and prints the table.
pub fn run(args: &[String]) -> CliResult<()> {
    let a = Args::parse(args, &["seed"], &[])?;
    if let Some(p) = a.positional.first() {
        return Err(CliError(format!("audit takes no positional arguments, got {p:?}")));
    }
    let seed: u64 = a.get("seed", 0)?;
    // the engine's ops, then the ops defined outside it (physics, flows)
    let mut cases = run_audit(seed);
    cases.extend(latflow_physics::ops::audit::run_audit(seed));
    cases.extend(latflow_flow::ops::audit::run_audit(seed));
    print!("{}", table(&cases, seed));
    let failed: Vec<&str> = cases.iter().filter(|c| !c.passed()).map(|c| c.op).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError(format!(
            "gradient audit: {} of {} cases failed: {}",
            failed.len(),
            cases.len(),
            failed.join(", ")
        )))
    }
}

/// The audit table: op, input shapes, max abs and rel error, pass/fail, and a summary.
pub fn table(cases: &[AuditCase], seed: u64) -> String {
    let ow = cases.iter().map(|c| c.op.len()).max().unwrap_or(2).max(2);
    let sw = cases.iter().map(|c| c.shapes.len()).max().unwrap_or(6).max(6);
    let tol = cases.first().map_or(latflow_tensor::GRADCHECK_TOL_F64, |c| c.report.tolerance);
    let mut s =
        format!("gradient audit: f64 central differences vs reverse mode, seed {seed}, tolerance {tol:.0e}\n\n");
    s += &format!("{:<ow$}  {:<sw$}  {:>10}  {:>10}  {}\n", "op", "shapes", "max abs", "max rel", "result");
    s += &format!("{}\n", "-".repeat(ow + sw + 34));
    for c in cases {
        let r = &c.report;
        let verdict = if c.passed() { "pass" } else { "FAIL" };
        s += &format!("{:<ow$}  {:<sw$}  {:>10.2e}  {:>10.2e}  {verdict}\n", c.op, c.shapes, r.max_abs(), r.max_rel());
    }
    let passed = cases.iter().filter(|c| c.passed()).count();
    let worst = cases.iter().map(|c| c.report.max_rel()).fold(0.0, f64::max);
    s += &format!("\n{passed}/{} passed, worst max rel error {worst:.2e}\n", cases.len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use latflow_tensor::{GradcheckReport, InputError};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn audit_passes_and_rejects_bad_flags() {
        assert!(run(&s(&["--seed", "3"])).is_ok());
        assert!(run(&s(&["--nope"])).unwrap_err().0.contains("unknown flag --nope"));
        assert!(run(&s(&["--seed", "x"])).unwrap_err().0.contains("--seed"));
        assert!(run(&s(&["extra"])).unwrap_err().0.contains("no positional"));
    }

    #[test]
    fn table_marks_failures() {
        let bad = InputError { max_abs: 1.0, max_rel: 0.5, worst: 0 };
        let case = AuditCase {
            op: "broken",
            shapes: "(2)".into(),
            report: GradcheckReport { inputs: vec![bad], tolerance: 1e-6 },
        };
        let t = table(&[case], 0);
        assert!(t.contains("broken") && t.contains("FAIL") && t.contains("0/1 passed"), "{t}");
    }
}
