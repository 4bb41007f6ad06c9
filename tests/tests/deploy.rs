//! deploy/kubernetes: every overlay renders with `kubectl kustomize`, its objects validate
//! against the Kubernetes schemas and its workloads carry the security settings
//! (tests/python/k8s_check.py, with the venv's kubernetes-validate), and its config TOML passes
//! `defender-ingest config check`, unless the binary does not have the section yet.

use std::{path::PathBuf, process::Command};

use defender_tests::{binary, python, repo_root};

/// Every overlay, and why its config cannot be checked by this binary yet (`None`: it can).
const OVERLAYS: &[(&str, Option<&str>)] = &[("kafka", None), ("eventhubs", None), ("backfill", None)];

fn overlays_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes/overlays")
}

/// kubectl with kustomize v5 (preinstalled on the CI machines; Debian's kubernetes-client is
/// far older), from DI_KUBECTL, PATH or /usr/bin.
fn kubectl() -> PathBuf {
    if let Some(k) = std::env::var_os("DI_KUBECTL") {
        return k.into();
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("kubectl")).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/kubectl")).filter(|p| p.is_file())).unwrap_or_else(|| {
        panic!(
            "kubectl is not on PATH nor at /usr/bin/kubectl: the deploy checks need kubectl ≥ 1.27 (kustomize v5); \
             install it (e.g. the Google Cloud CLI's kubectl package) or set DI_KUBECTL"
        )
    })
}

#[test]
fn every_overlay_directory_is_checked() {
    let mut found: Vec<String> =
        std::fs::read_dir(overlays_dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    found.sort();
    let mut known: Vec<String> = OVERLAYS.iter().map(|(o, _)| o.to_string()).collect();
    known.sort();
    assert_eq!(found, known, "add the new overlay to OVERLAYS in tests/tests/deploy.rs");
}

#[test]
fn every_overlay_renders_validates_and_is_locked_down() {
    let kubectl = kubectl();
    let dir = tempfile::tempdir().unwrap();
    for (overlay, _) in OVERLAYS {
        let out = Command::new(&kubectl).arg("kustomize").arg(overlays_dir().join(overlay)).output().unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize deploy/kubernetes/overlays/{overlay} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&rendered, &out.stdout).unwrap();
        let report = python("k8s_check.py", &[rendered.to_str().unwrap()]);
        eprintln!("overlay {overlay}:\n{report}");
    }
}

#[test]
fn every_overlay_config_passes_config_check() {
    for (overlay, missing) in OVERLAYS {
        let config = overlays_dir().join(overlay).join("config.toml");
        assert!(config.is_file(), "{} is missing", config.display());
        if let Some(why) = missing {
            eprintln!("skipped: config check of overlays/{overlay}/config.toml: {why}");
            continue;
        }
        let out = Command::new(binary()).args(["config", "check", "--config"]).arg(&config).output().unwrap();
        assert!(
            out.status.success(),
            "defender-ingest config check --config {} failed:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// deploy/azure/defender-ingest.json: the resources the deployment needs, the three roles, and
/// every `parameters('x')` it uses declared (ARM would reject the template at deploy time only).
#[test]
fn the_azure_template_has_the_identity_roles_and_storage_and_declares_its_parameters() {
    let path = repo_root().join("deploy/azure/defender-ingest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let t: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let types: Vec<&str> = t["resources"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    for want in [
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        "Microsoft.EventHub/namespaces/eventhubs/consumergroups",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "Microsoft.Storage/storageAccounts/managementPolicies",
        "Microsoft.Authorization/roleAssignments",
    ] {
        assert!(types.contains(&want), "{want} missing from {}", path.display());
    }
    for (role, id) in [
        ("Azure Event Hubs Data Receiver", "a638d3c7-ab3a-418d-83e6-5f17a39d4fde"),
        ("Storage Blob Data Contributor", "ba92f5b4-2d11-453d-a403-e96b0029c9fe"),
        ("Monitoring Metrics Publisher", "3913510d-42f4-4e42-8a64-420c390055eb"),
    ] {
        assert!(text.contains(id), "no role assignment of {role} ({id})");
    }
    let declared = t["parameters"].as_object().unwrap();
    for used in text.split("parameters('").skip(1).map(|s| s.split('\'').next().unwrap()) {
        assert!(declared.contains_key(used), "parameters('{used}') is used but not declared");
    }
}

/// The backfill Job's container args are ones the binary takes: parsed by it up to `--help`.
#[test]
fn the_backfill_job_args_parse_with_the_backfill_command() {
    let job = std::fs::read_to_string(overlays_dir().join("backfill/job.yaml")).unwrap();
    let args: Vec<String> = job
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|a| a.trim_matches('"').to_string())
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("backfill"), "{args:?}");
    let out = Command::new(binary()).args(&args).arg("--help").output().unwrap();
    assert!(out.status.success(), "defender-ingest {args:?} does not parse:\n{}", String::from_utf8_lossy(&out.stderr));
}
