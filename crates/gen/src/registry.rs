//! Registry keys and values that Windows, Office, browsers, management agents and (rarely)
//! malware write, in Defender's notation (`HKEY_LOCAL_MACHINE\...`, `HKEY_CURRENT_USER\<SID>\...`).

use rand::{Rng, rngs::SmallRng};

use crate::{
    json::{push_guid, push_hex},
    pools::SERVICES,
    scenario::{Ctx, Reg},
    world::pick,
};

/// (key, value name, type, data) templates. In keys, `{SID}` is the user's SID, `{SVC}` a service
/// name and `{GUID}` a fresh guid; data `{DWORD}`, `{BIN}`, `{QWORD}`, `{PATH}` are generated.
const TEMPLATES: &[(&str, &str, &str, &str)] = &[
    ("HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\{SVC}", "Start", "Dword", "{DWORD}"),
    (
        "HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\{SVC}\\Parameters",
        "ServiceDll",
        "ExpandString",
        "%SystemRoot%\\System32\\{SVC}.dll",
    ),
    (
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
        "ContosoAgent",
        "String",
        "\"C:\\Program Files\\Contoso\\Agent\\agent.exe\" /background",
    ),
    (
        "HKEY_CURRENT_USER\\{SID}\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
        "OneDrive",
        "String",
        "\"C:\\Program Files\\Microsoft OneDrive\\OneDrive.exe\" /background",
    ),
    (
        "HKEY_CURRENT_USER\\{SID}\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\RecentDocs\\.docx",
        "MRUListEx",
        "Binary",
        "{BIN}",
    ),
    (
        "HKEY_CURRENT_USER\\{SID}\\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\UserAssist\\{CEBFF5CD-ACE2-4F4F-9178-9926F41749EA}\\Count",
        "HRZR_PGYFRFFVBA",
        "Binary",
        "{BIN}",
    ),
    (
        "HKEY_CURRENT_USER\\{SID}\\Software\\Microsoft\\Office\\16.0\\Common\\Roaming\\Identities\\{GUID}_ADAL",
        "LastSwitchedTime",
        "Qword",
        "{QWORD}",
    ),
    (
        "HKEY_CURRENT_USER\\{SID}\\Software\\Microsoft\\Office\\16.0\\Outlook\\Profiles\\Outlook\\{GUID}",
        "001f6641",
        "Binary",
        "{BIN}",
    ),
    ("HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows Defender\\Features", "TamperProtection", "Dword", "5"),
    (
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache\\Tree\\Microsoft\\Windows\\UpdateOrchestrator\\Schedule Scan",
        "Id",
        "String",
        "{GUID}",
    ),
    (
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache\\Tasks\\{GUID}",
        "DynamicInfo",
        "Binary",
        "{BIN}",
    ),
    (
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU",
        "NoAutoRebootWithLoggedOnUsers",
        "Dword",
        "1",
    ),
    ("HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\Lsa", "RunAsPPL", "Dword", "{DWORD}"),
    (
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\SystemCertificates\\AuthRoot\\Certificates\\{HEX40}",
        "Blob",
        "Binary",
        "{BIN}",
    ),
    (
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\SessionsPending",
        "Exclusive",
        "Dword",
        "{DWORD}",
    ),
    (
        "HKEY_CURRENT_USER\\{SID}\\Software\\Google\\Chrome\\PreferenceMACs\\Default",
        "session.restore_on_startup",
        "String",
        "{HEX64}",
    ),
    ("HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\CCM\\StateSystem", "LastPolicyRequest", "String", "{TIME}"),
    (
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\IntuneManagementExtension\\SideCarPolicies\\Scripts\\Execution\\{GUID}",
        "Result",
        "String",
        "Success",
    ),
    (
        "HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\bam\\State\\UserSettings\\{SID}",
        "\\Device\\HarddiskVolume3\\Windows\\System32\\cmd.exe",
        "Binary",
        "{BIN}",
    ),
];

/// A registry value for a registry event of `ctx.action`.
pub(crate) fn value(ctx: &Ctx<'_>, rng: &mut SmallRng) -> Reg {
    let (key, name, ty, data) = pick(rng, TEMPLATES);
    let svc = pick(rng, SERVICES);
    let key = fill(key, &ctx.user.sid, svc, rng);
    let mut reg = Reg { key, ..Reg::default() };
    match ctx.action {
        "RegistryKeyCreated" | "RegistryKeyDeleted" => {}
        "RegistryKeyRenamed" => {
            reg.previous = Some((format!("{}.old", reg.key), String::new(), String::new()));
        }
        _ => {
            reg.value_name = name.to_string();
            reg.value_type = ty;
            if ctx.action == "RegistryValueSet" {
                reg.data = fill(data, &ctx.user.sid, svc, rng);
                if rng.random_bool(0.4) {
                    let old = fill(data, &ctx.user.sid, svc, rng);
                    reg.previous = Some((reg.key.clone(), reg.value_name.clone(), old));
                }
            }
        }
    }
    reg
}

fn fill(template: &str, sid: &str, svc: &str, rng: &mut SmallRng) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else { break };
        out.push_str(&rest[..start]);
        let token = &rest[start + 1..start + len];
        match token {
            "SID" => out.push_str(sid),
            "SVC" => out.push_str(svc),
            "GUID" => {
                out.push('{');
                let at = out.len();
                push_guid(&mut out, rng.random());
                out[at..].make_ascii_uppercase();
                out.push('}');
            }
            "DWORD" => out.push_str(&rng.random_range(0..5u32).to_string()),
            "QWORD" => out.push_str(&rng.random_range(133_700_000_000_000_000u64..134_100_000_000_000_000).to_string()),
            "HEX40" => push_hex(&mut out, rng.random(), 40),
            "HEX64" => push_hex(&mut out, rng.random(), 64),
            "TIME" => out.push_str("2026-11-19 23:14:02"),
            "BIN" => {
                let at = out.len();
                push_hex(&mut out, rng.random(), rng.random_range(16..96));
                out[at..].make_ascii_uppercase();
            }
            // A literal brace (the UserAssist key) stays as written.
            _ => out.push_str(&rest[start..start + len + 1]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}
