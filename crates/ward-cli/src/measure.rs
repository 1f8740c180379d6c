//! `ward measure`: the launch measurement a Keep's evidence will carry, computed
//! offline from the build, so a policy can pin it before any Keep exists.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ward_host::find_keep_binary;
use ward_proto::WorkloadConfig;

use crate::run::Backend;

/// Arguments of `ward measure`.
#[derive(clap::Args)]
#[command(
    after_help = "The value is what `ward deploy` sees in the Keep's evidence. Pin it in a
policy (`ward attest policy init`) to accept only this build:

  ward measure --backend kvm --config Ward.toml

kvm: SHA-384 over the initial guest image (shim, ward-keep, page tables, argv, guest
memory size); see docs/kvm.md. The guest memory size comes from [limits] memory, so
measure with the same Ward.toml you deploy with.
process: SHA-384 of the ward-keep binary."
)]
pub(crate) struct MeasureArgs {
    /// Kind of Keep.
    #[arg(long, value_enum, default_value = "kvm")]
    backend: Backend,
    /// The Ward.toml the workload will be deployed with (its memory limit sizes a kvm
    /// guest). Without it: the defaults.
    #[arg(long, short = 'c', value_name = "Ward.toml")]
    config: Option<PathBuf>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: MeasureArgs) -> anyhow::Result<ExitCode> {
    let cfg = match &args.config {
        Some(path) => ward_runtime::config::load(path)?,
        None => WorkloadConfig::default(),
    };
    let keep_bin = find_keep_binary().map_err(anyhow::Error::msg)?;
    let (digest, memory) = match args.backend {
        Backend::Kvm => {
            // Remote Keeps, the ones with evidence, run ward-keep with --tls.
            let vm =
                ward_host::local::kvm_keep_config(&keep_bin, cfg.limits.memory_bytes, None, true)?;
            let digest = ward_vmm::measure(&vm).context("measuring the kvm guest image")?;
            (digest.to_vec(), Some(vm.memory_bytes))
        }
        Backend::Process => {
            let digest = ward_host::process::keep_binary_measurement(&keep_bin)
                .with_context(|| format!("cannot read {}", keep_bin.display()))?;
            (digest.to_vec(), None)
        }
    };
    let hex = hex::encode(&digest);
    let backend = match args.backend {
        Backend::Kvm => "kvm",
        Backend::Process => "process",
    };
    if args.json {
        let v = serde_json::json!({
            "backend": backend,
            "measurement": hex,
            "guest_memory_bytes": memory,
            "keep": keep_bin,
        });
        println!("{v}");
    } else {
        println!("{hex}");
        let mem = memory
            .map(|m| format!(", guest memory {}", ward_runtime::config::human_bytes(m)))
            .unwrap_or_default();
        eprintln!(
            "ward: {backend} launch measurement (SHA-384) of {}{mem}",
            keep_bin.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
