//! `vth-fuzz [TARGET ...] [--seconds N]`: fuzz the parsers that face the
//! outside and print a table of executions and findings. Exits 1 when
//! anything broke; each finding is saved under `--findings`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vtelehealth_fuzz::targets::{NAMES, by_name};
use vtelehealth_fuzz::{Options, fuzz, quiet_panics};

#[derive(Parser)]
#[command(name = "vth-fuzz", about = "Fuzz VTelehealth's outward-facing parsers")]
struct Cli {
    /// Targets to run (all when none): hl7v2, manifest, bundle, fhir,
    /// fhir-search, gateway-notification, oidc, jwt.
    targets: Vec<String>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the mutations (a run is repeatable for a seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where inputs that broke something are written.
    #[arg(long, default_value = "target/fuzz/findings")]
    findings: PathBuf,
}

fn progress(target: &'static str, executions: u64, corpus: usize, findings: usize) {
    println!("    {target}: {executions} inputs, corpus {corpus}, findings {findings}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let names: Vec<String> = if cli.targets.is_empty() {
        NAMES.iter().map(|n| (*n).to_owned()).collect()
    } else {
        cli.targets.clone()
    };
    if let Some(unknown) = names.iter().find(|n| !NAMES.contains(&n.as_str())) {
        eprintln!(
            "vth-fuzz: no target `{unknown}`; the targets are: {}",
            NAMES.join(", ")
        );
        return ExitCode::FAILURE;
    }
    quiet_panics();
    let options = Options {
        duration: Duration::from_secs(cli.seconds),
        seed: cli.seed,
        findings_dir: Some(cli.findings.clone()),
        progress: Some(progress),
    };
    let mut rows = Vec::new();
    let mut broken = 0;
    for name in &names {
        println!("==> fuzzing {name} for {} s", cli.seconds);
        let Some(mut target) = by_name(name) else {
            continue;
        };
        let report = fuzz(target.as_mut(), &options);
        for finding in &report.findings {
            broken += 1;
            println!(
                "    FINDING in {name}: {}\n      input saved to {}",
                finding.what,
                finding
                    .saved
                    .as_ref()
                    .map_or("(not saved)".into(), |p| p.display().to_string())
            );
        }
        rows.push(format!(
            "| `{}` | {} | {:.0} | {} | {} | {} |",
            report.target,
            report.executions,
            report.executions as f64 / report.elapsed.as_secs_f64().max(1e-9),
            report.corpus,
            report.outcomes,
            report.findings.len()
        ));
    }
    println!("\n| target | inputs | inputs/s | corpus | distinct outcomes | findings |");
    println!("| --- | --: | --: | --: | --: | --: |");
    for row in rows {
        println!("{row}");
    }
    if broken > 0 {
        eprintln!("vth-fuzz: {broken} finding(s); see above");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
